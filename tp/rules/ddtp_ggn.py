"""DDTP-GGN: DDTP-linear whose feedback reads the H^{1/2}-transformed output (paper Appendix D, D.2; beyond the
paper's experiments, which never ran it)."""

from __future__ import annotations

import math

from ..core.replicas import is_per_replica
from ..errors import HyperparameterError
from ..nets.gauss_newton import output_hessian_roots
from .base import REQUIRED
from .ddtp import DDTPLinear
from .direct import OutputSpace

__all__ = ["DDTPGGN"]


class DDTPGGN(DDTPLinear):
    """DDTP-linear with the output mapping transformed by the loss Hessian (paper Appendix D, eqs. 191–197).

    Per sample b, H^b = ∂²ℓ_b/∂(h_L^b)² at the clean output (softmax + cross-entropy: diag(p) − ppᵀ) and its
    symmetric root R^b = (H^b_δ)^{1/2} (:func:`tp.nets.gauss_newton.output_hessian_roots`, held fixed in the step):

    * the feedback reads z = R h_L:  g_i(z) = Q_i z + d_i (Q_i: n_i × n_L, as DDTP-linear);
    * output target ẑ = R h_L − R⁺(h_L − ĥ_L) = z − β R⁺ ∂ℒ/∂h_L (eq. 196), hidden targets
      ĥ_i = g_i(ẑ) + h_i − g_i(z) = h_i − β Q_i R⁺ ∂ℒ/∂h_L;
    * DRL (eq. 193): ỹ = R F_{i→L}(h_i + ε), (1/σ²)·mean(g_i(ỹ) + h_i − g_i(z) − (h_i + ε))².

    Its minimum (one sample, σ → 0) is Q_i = (R J_i)⁺ with J_i = ∂h_L/∂h_i (eqs. 194–195), and then
    ĥ_i − h_i = −β (R J_i)⁺ R⁺ ∂ℒ/∂h_L = −β (J_iᵀ H J_i)⁺ J_iᵀ ∂ℒ/∂h_L: the undamped GGN target (eq. 197).
    ``hessian_damping`` δ ≥ 0 (default 0: Appendix D as written) is added to H's positive spectrum; it bounds
    the gain R⁺ of confident predictions (eigenvalues p_k → 0)."""

    name = "ddtp-ggn"
    paper_name = "DDTP-GGN"
    hyperparameters = {"target_stepsize": REQUIRED, "sigma": REQUIRED, "hessian_damping": 0.0}
    output_space = "hessian-root"

    def _validate(self) -> None:
        super()._validate()
        delta = self.hp["hessian_damping"]
        ok = (bool(((delta >= 0) & delta.isfinite()).all()) if is_per_replica(delta)
              else isinstance(delta, (int, float)) and not isinstance(delta, bool) and math.isfinite(delta)
              and delta >= 0)
        if not ok:
            shown = delta.tolist() if is_per_replica(delta) else repr(delta)
            raise HyperparameterError(f"rule {self.name!r}: hessian_damping must be a finite number >= 0, "
                                      f"got {shown}")

    def _output_space(self, net, fwd) -> OutputSpace:
        R, R_pinv = output_hessian_roots(net, fwd.output, self.hp["hessian_damping"])
        return OutputSpace(R, R_pinv)
