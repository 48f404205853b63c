"""Where and in which precision a run computes: device names, TF32, dtypes
(docs/algorithms.md#float64-against-lost-target-displacements).

Used by ``tp train``, ``tp search`` and the benchmarks alike, so that every entry point resolves ``auto``
and switches TF32 off the same way.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError

__all__ = ["resolve_device", "no_tf32", "dtype_of"]


def no_tf32() -> None:
    """TF32 off: it silently lowers float32 matmul and convolution precision on CUDA (float64 is unaffected)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def resolve_device(name: str) -> torch.device:
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` → a device (``auto``: CUDA when available); TF32 off on CUDA."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {name!r}; valid examples: auto, cpu, cuda, cuda:1") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} requested but CUDA is not available; use --device cpu")
        no_tf32()
    return device


def dtype_of(cfg) -> torch.dtype:
    """A run configuration's dtype: float64 when ``double_precision``
    (docs/algorithms.md#float64-against-lost-target-displacements), else float32."""
    return torch.float64 if cfg["double_precision"] else torch.float32
