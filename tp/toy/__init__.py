"""The toy experiments of the paper (docs/algorithms.md#the-toy-experiments-fig-2-s3): Fig. 2 and Fig. S3.

* **Fig. 2 — null-space component of the forward updates** (paper §3.3 / Theorem 5,
  docs/algorithms.md#fig-2-null-space-component-of-the-updates). For one sample x, the Jacobian of the output w.r.t. the
  (row-major) flattened weights of layer i,

      J = ∂h_L/∂vec(W_i) ∈ ℝ^{n_L × n_i n_{i−1}},   J = (J_i D_i) ⊗ h_{i−1}ᵀ,

  with J_i = ∂h_L/∂h_i (:func:`tp.nets.gauss_newton.output_jacobians`) and D_i = diag φ_i′(a_i), has rank n_L
  (generically).  Its null space N(J) holds the weight changes that leave the output unchanged to first
  order.  The quantity plotted is ρ_i = ‖P_{N(J)} vec(ΔW_i)‖ / ‖vec(ΔW_i)‖ for the method's update ΔW_i:
  GN-like updates (DDTP-linear trained with the DRL) have little null-space component, DTP's layer-wise
  inverses do not (paper Fig. 2).
  :func:`nullspace_experiment` reproduces the official run: student 6→6→6→2 on student–teacher data,
  batch size 1, feedback trained by SGD, forward weights frozen.

* **Fig. S3 — direction of the output change** (docs/algorithms.md#fig-s3-direction-of-the-output-change).  One SGD step
  (lr 10⁻⁵) of the GNT update (λ = 0, all layers) and of the BP gradient on the single validation sample of a 4→4→4→2
  network without biases; Δy = y_after − y_before.  GN targets push the output along −e, e = ∂ℒ/∂h_L (paper Theorem 2):
  exactly for the output layer and for the *targets* of every layer (J_i Δ_i = e); the local-loss update of
  a tanh hidden layer adds the factor D_i², so the total step is very close to, not exactly, anti-parallel
  to e.  BP's step is J_θ J_θᵀ e, in general visibly off that direction.

Everything runs in float32 like the official toy configs (docs/algorithms.md#the-toy-experiments-fig-2-s3,
docs/algorithms.md#configurations-that-run-in-float32); all randomness comes from
``torch.Generator`` objects seeded from the ``seed`` argument (never the global RNG).
"""

from .config import (NULLSPACE_METHODS, TOY_CONFIG_PATH, load_toy_config, nullspace_hyperparameters,
                     output_space_hyperparameters)
from .nullspace import (nullspace_basis, nullspace_experiment, nullspace_ratio, nullspace_ratios, sgd_step,
                        summarize_ratios, weight_jacobian, weight_jacobians)
from .output_space import OutputSpaceResult, output_space_experiment

__all__ = [
    "TOY_CONFIG_PATH", "NULLSPACE_METHODS", "load_toy_config", "nullspace_hyperparameters",
    "output_space_hyperparameters", "weight_jacobian", "weight_jacobians", "nullspace_basis", "nullspace_ratio",
    "nullspace_ratios", "sgd_step", "nullspace_experiment", "summarize_ratios", "OutputSpaceResult",
    "output_space_experiment",
]
