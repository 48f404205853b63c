"""Generalized Gauss–Newton targets (paper Appendix D; issue 22, item 1): the output Hessian against
autograd, the batched damped GGN displacement against a per-sample n_i × n_i solve, the GGNT rule against
an independent float64 reference (autograd Jacobians and Hessians), and what the theory says: with H = I
the GGN targets are the GN targets, and at the output layer the undamped GGN step is Newton's step on the
loss (H Δ_L = ∂ℒ/∂h_L)."""

from __future__ import annotations

import pytest
import torch

import reference as ref
import tp
from test_reference import GNT_SIZES, assert_close, random_case
from tp.nets.gauss_newton import (damped_ggn_displacement, damped_gn_displacement, helmert_basis, output_hessian,
                             output_hessian_roots, output_hessian_sqrt, softmax_hessian_sqrt)

DT = torch.float64


def _outputs(loss, seed):
    """A 3-5-6 network with ``loss``, 4 random outputs h_L, their targets, and its per-sample twin."""
    g = torch.Generator().manual_seed(seed)
    net = tp.MLP.build([3, 5, 6], loss=loss)
    out = 2 * torch.randn(4, 6, generator=g, dtype=DT)
    y = torch.randint(0, 6, (4,), generator=g) if loss == "cross_entropy" else torch.randn(4, 6, generator=g,
                                                                                            dtype=DT)
    rnet = ref.Net([3, 5, 6], list(net.activations), loss)
    return net, out, y, rnet


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_output_hessian_is_autograds_hessian_of_each_samples_loss(loss):
    net, out, y, rnet = _outputs(loss, seed=0)
    H = output_hessian(net, out)
    M = output_hessian_sqrt(net, out)
    assert_close(M.mT @ M, H, "MᵀM")
    assert M.shape[-2] == (5 if loss == "cross_entropy" else 6)  # full row rank: the null direction removed
    for b in range(4):
        expected = ref.per_sample_loss_hessian(rnet, out[b], y[b])
        assert_close(H[b], expected, f"H^{b}")
    if loss == "cross_entropy":  # PSD of rank n_L − 1, null space the all-ones direction
        S = torch.linalg.eigvalsh(H)
        assert (S > -1e-15).all() and (S[:, 0].abs() < 1e-15).all() and (S[:, 1:] > 1e-6).all()
        assert_close(H @ torch.ones(6, dtype=DT), torch.zeros(4, 6, dtype=DT), "H 1")
        Q = helmert_basis(6)
        assert_close(Q.T @ Q, torch.eye(5, dtype=DT), "QᵀQ")
        assert_close(Q @ Q.T, torch.eye(6, dtype=DT) - 1 / 6, "QQᵀ")


def _softmax_hessians(B, n_L, g):
    p = torch.softmax(3 * torch.randn(B, n_L, generator=g, dtype=DT), -1)
    return torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2), p


@pytest.mark.parametrize("n", [3, 4, 9], ids=["narrower", "equal", "wider"])
@pytest.mark.parametrize("damping", [0.0, 1e-5, 0.1, 3.0])
def test_batched_ggn_displacement_is_the_per_sample_solve(n, damping):
    g = torch.Generator().manual_seed(n)
    B, n_L = 5, 4
    J = torch.randn(B, n_L, n, generator=g, dtype=DT)
    H, p = _softmax_hessians(B, n_L, g)
    e = p - torch.nn.functional.one_hot(torch.arange(B) % n_L, n_L).to(DT)  # ∝ ∂ℒ/∂h_L: ⟂ the ones vector
    fast = damped_ggn_displacement(J, softmax_hessian_sqrt(p), e, damping)
    for b in range(B):
        A, v = J[b].T @ H[b] @ J[b], J[b].T @ e[b]
        slow = (torch.linalg.pinv(A, hermitian=True, rtol=1e-10) @ v if damping == 0
                else torch.linalg.solve(A + damping * torch.eye(n, dtype=DT), v))
        # Woodbury divides by λ: its rounding grows like ε‖v‖/λ (and the reference's like cond = ‖A‖/λ)
        assert_close(fast[b], slow, f"Δ^{b}", rtol=1e-10 if damping == 0 else max(1e-10, 1e-14 / damping))
    with pytest.raises(ValueError, match="damping must be >= 0"):
        damped_ggn_displacement(J, softmax_hessian_sqrt(p), e, -1.0)


@pytest.mark.parametrize("damping", [0.0, 0.1, 2.0])
def test_with_an_identity_hessian_ggn_is_gauss_newton(damping):
    g = torch.Generator().manual_seed(7)
    J, e = torch.randn(3, 2, 4, 5, generator=g, dtype=DT), torch.randn(3, 2, 4, generator=g, dtype=DT)
    eye = torch.eye(4, dtype=DT).expand(3, 2, 4, 4)  # a leading replica dimension too
    assert_close(damped_ggn_displacement(J, eye, e, damping), damped_gn_displacement(J, e, damping), "GGN(I)")


@pytest.mark.parametrize("damping", [0.0, 0.1, 2.0, [0.0, 0.3, 1e-3, 0.5]],
                         ids=["lam0", "lam0.1", "lam2", "per-layer"])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_ggnt_matches_reference(damping, loss):
    rule = tp.make_rule("ggnt", gn_damping=damping)
    net, params, fb, x, y, _, rnet = random_case(rule, sizes=GNT_SIZES, loss=loss, seed=5)
    out = rule.forward_update(net, params, fb, x, y)
    h = net.forward(params, x).h
    ref_targets = ref.ggnt_targets(rnet, params, x, y, damping)
    ref_h = ref.forward_all(rnet, params, x)
    assert sorted(out.targets) == sorted(ref_targets) == list(range(1, net.L + 1))
    lams = [damping] * net.L if isinstance(damping, float) else damping
    # λ = 0: the reference's pinv of JᵀHJ squares J̃'s condition number (about 1e4 here), so its own rounding
    # reaches ~1e-8; the rule works on J̃ itself
    tol = {i: 1e-7 if lams[i - 1] == 0 else 1e-10 for i in range(1, net.L + 1)}
    for i, t in ref_targets.items():
        assert_close(out.targets[i] - h[i], t - torch.stack([hb[i] for hb in ref_h]), f"ggnt ĥ{i} − h{i}",
                     rtol=tol[i])
    ref_grads = ref.local_loss_gradients(rnet, params, x, ref_targets)
    for k, grad in ref_grads.items():
        assert_close(out.forward_grads[k], grad, f"ggnt grad {k}", rtol=tol[int(k[1:])])
    gnt = tp.make_rule("gnt", gn_damping=damping).forward_update(net, params, fb, x, y)
    assert not torch.allclose(gnt.targets[1], out.targets[1])  # the Hessian matters


def test_the_undamped_output_step_is_newtons_step_on_the_loss():
    """i = L: J_L = I, so Δ_L = H⁺ ∂ℒ/∂h_L, and H Δ_L = ∂ℒ/∂h_L (∂ℒ/∂h_L lies in H's range: it sums to 0)."""
    rule = tp.make_rule("ggnt", gn_damping=0.0)
    net, params, fb, x, y, _, rnet = random_case(rule, sizes=GNT_SIZES, seed=8)
    out = rule.forward_update(net, params, fb, x, y)
    fwd = net.forward(params, x)
    delta = fwd.output - out.targets[net.L]
    H = output_hessian(net, fwd.output)
    assert_close((H @ delta.unsqueeze(-1)).squeeze(-1), net.output_gradient(fwd.output, y), "H Δ_L")
    assert_close(delta.sum(-1), torch.zeros(delta.shape[0], dtype=DT), "Δ_L ⟂ 1")  # minimum norm: no 1-part


# --------------------------------------------------------------------------- DDTP-GGN (issue 22, item 2)
@pytest.mark.parametrize("loss,delta", [("cross_entropy", 0.0), ("cross_entropy", 0.2), ("mse", 0.0),
                                        ("mse", 0.2)])
def test_hessian_roots_are_the_symmetric_root_of_the_damped_hessian_and_its_pseudo_inverse(loss, delta):
    """R = H_δ^{1/2} symmetric PSD with R R = H + δP (P the projector onto H's range) for autograd's H of each
    sample; R⁺ its Moore–Penrose pseudo-inverse; per-replica δ gives each replica its own root."""
    net, out, y, rnet = _outputs(loss, seed=1)
    R, R_pinv = output_hessian_roots(net, out, delta)
    P = torch.eye(6, dtype=DT) - (1 / 6 if loss == "cross_entropy" else 0)
    for b in range(4):
        H = ref.per_sample_loss_hessian(rnet, out[b], y[b])
        assert_close(R[b], R[b].T, f"Rᵀ^{b}")
        assert_close(R[b] @ R[b], H + delta * P, f"R²^{b}")
        assert torch.linalg.eigvalsh(R[b]).min() > -1e-12
        assert_close(R_pinv[b], torch.linalg.pinv(R[b], hermitian=True, rtol=1e-10), f"R⁺^{b}")
        assert_close(ref.hessian_root(rnet, out[b], y[b], delta)[0], R[b], f"reference R^{b}")
    stacked = torch.stack([out, out])  # two replicas, δ = 0 and 0.2
    R2, _ = output_hessian_roots(net, stacked, torch.tensor([0.0, 0.2], dtype=DT))
    assert_close(R2[1], output_hessian_roots(net, out, 0.2)[0], "replica 1")
    assert_close(R2[0], output_hessian_roots(net, out, 0.0)[0], "replica 0")


def test_saturated_softmax_keeps_a_finite_pseudo_inverse():
    """An underflowed probability (p_k = 0 in float64) makes an eigenvalue exactly 0: R⁺ is 0 there (the
    pseudo-inverse convention), never inf; δ > 0 makes it finite and ≤ δ^{-1/2}."""
    net = tp.MLP.build([3, 5, 3], loss="cross_entropy")
    out = torch.tensor([[0.0, 800.0, -800.0]], dtype=DT)
    for delta in (0.0, 1e-3):
        R, R_pinv = output_hessian_roots(net, out, delta)
        assert torch.isfinite(R).all() and torch.isfinite(R_pinv).all()
        assert torch.linalg.matrix_norm(R_pinv, ord=2).item() <= (delta ** -0.5 if delta else 0) + 1e-9


@pytest.mark.parametrize("bad", [-1e-3, float("nan"), float("inf"), True, "0.1"])
def test_ddtp_ggn_rejects_a_bad_hessian_damping(bad):
    with pytest.raises(tp.HyperparameterError, match="hessian_damping must be a finite number >= 0"):
        tp.make_rule("ddtp-ggn", target_stepsize=0.1, sigma=0.1, hessian_damping=bad)
