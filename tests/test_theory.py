"""The paper's theory, checked numerically on small float64 networks.

Meulemans et al., NeurIPS 2020, "A Theoretical Framework for Target Propagation":

* Lemma 1 / Theorem 2 — with exact inverses as feedback, TP targets approach Gauss–Newton targets, the
  discrepancy vanishing linearly with the output step β.
* Theorem 4 — the difference reconstruction loss (DRL) drives direct linear feedback to the pseudo-inverse
  of the forward Jacobian J_{f̄ i,L} = ∂h_L/∂h_i.
* §3.2 / SM A.2 — DTP's layer-wise reconstruction loss drives each linear feedback matrix to the layer's
  (least-squares) inverse, whose product is *not* the pseudo-inverse of the product.
* Theorem 5 / Corollary S6.1 — GNT updates on contracting linear networks have no component in the null
  space of ∂h_L/∂vec(W_i); DTP's do, although both push the output along −∂ℒ/∂h_L.
* Theorem 6 — on linear networks (any architecture, any batch size) GNT updates lie within 90° of the loss
  gradient, and GNT converges to the global minimum.
* Theorem S12 — a scaled transpose of a wide zero-mean random matrix approximates its pseudo-inverse.

Every quantity the theory talks about (Jacobians, pseudo-inverses, BP gradients, null spaces) is computed
here independently of ``tp`` (autograd, ``torch.linalg``); ``tp`` supplies only the learning rules under
test.  Everything is seeded; run ``pytest -s`` to see the measured numbers.
"""

from __future__ import annotations

import math

import pytest
import torch

import tp

DT = torch.float64


# ------------------------------------------------------------------------------------------ helpers
@pytest.fixture(autouse=True, scope="module")
def _one_intra_op_thread():
    """These are thousands of tiny tensor ops: intra-op threads only add synchronisation overhead (and
    make the runtime erratic on a loaded machine).  Restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape, g: torch.Generator, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(*shape, generator=g, dtype=DT)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a − b‖ / ‖b‖ (Frobenius)."""
    return ((a - b).norm() / b.norm()).item()


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return (torch.dot(a.flatten(), b.flatten()) / (a.norm() * b.norm())).item()


def random_biases(net: tp.MLP, params: dict, g: torch.Generator, scale: float) -> dict:
    """Biases are zero at initialisation; make them nonzero so the checks cover them."""
    return {k: (randn(*v.shape, g=g, scale=scale) if k[0] == "b" else v) for k, v in params.items()}


def output_jacobian(net: tp.MLP, params: dict, i: int, h_i: torch.Tensor) -> torch.Tensor:
    """∂h_L/∂h_i (n_L × n_i) of one sample ``h_i`` (1, n_i), by autograd."""
    J = torch.autograd.functional.jacobian(lambda h: net.forward_from(params, i, h), h_i)
    return J[0, :, 0, :]


def weight_jacobian(net: tp.MLP, params: dict, i: int, x: torch.Tensor) -> torch.Tensor:
    """∂h_L/∂vec(W_i) (n_L × n_i·n_{i−1}, row-major vec) of one sample ``x`` (1, n_0), by autograd."""
    def out(W):
        return net.forward({**params, f"W{i}": W}, x).output[0]

    J = torch.autograd.functional.jacobian(out, params[f"W{i}"])
    return J.reshape(J.shape[0], -1)


def null_space_fraction(J: torch.Tensor, v: torch.Tensor) -> float:
    """‖P_N(J) v‖ / ‖v‖ with N(J) the null space of J (from the full SVD; J must have full row rank)."""
    _, s, Vh = torch.linalg.svd(J, full_matrices=True)
    rank = J.shape[0]
    assert s[rank - 1] > 1e-8 * s[0], f"J is rank deficient: singular values {s.tolist()}"
    N = Vh[rank:]
    return ((N @ v.flatten()).norm() / v.norm()).item()


def bp_gradients(net: tp.MLP, params: dict, x: torch.Tensor, y: torch.Tensor) -> dict:
    """∂ℒ/∂θ of the minibatch-mean loss, by autograd (independent of ``tp.rules.bp``)."""
    p = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    loss = net.loss_value(net.forward(p, x).output, y)
    grads = torch.autograd.grad(loss, list(p.values()))
    return dict(zip(p, grads))


def train_feedback_sgd(rule, net, params, fb, fwd, steps: int, lr: float, noise_gen: torch.Generator):
    """Plain SGD on the rule's feedback gradients (no weight decay), fresh noise every step; returns the
    last iterate and the Polyak average of the second half of the iterates (which removes the SGD noise
    around the minimiser: the reconstruction-loss gradient does not vanish sample-wise at the optimum)."""
    names = rule.trainable_feedback(fb)
    cur = dict(fb)
    avg = {k: torch.zeros_like(fb[k]) for k in names}
    n_avg = 0
    for t in range(steps):
        grads, _ = rule.feedback_gradients(net, params, cur, fwd, generator=noise_gen)
        cur = {**cur, **{k: cur[k] - lr * grads[k] for k in names}}
        if t >= steps // 2:
            n_avg += 1
            for k in names:
                avg[k] += (cur[k] - avg[k]) / n_avg
    return cur, {**fb, **avg}


# ----------------------------------------------------------------------------- Lemma 1 / Theorem 2
def test_lemma1_theorem2_tp_targets_with_exact_inverses_approach_gauss_newton_targets():
    """Condition 1 network (square layers, invertible leaky-tanh, linear output), batch size 1, squared
    error, feedback g_i = f_i⁻¹:  ĥ_i − h_i = −J_i⁻¹ e + O(β²), e = β ∂ℒ/∂h_L (Lemma 1), i.e. the
    Gauss–Newton step on h_i (Theorem 2).  The relative discrepancy must shrink ∝ β."""
    g = gen(11)
    n, L = 5, 4
    net = tp.MLP((n,) * (L + 1), ("leaky_tanh",) * (L - 1) + ("linear",), (True,) * L, loss="mse")
    params = random_biases(net, net.init_params(g), g, 0.3)
    x, y = randn(1, n, g=g), randn(1, n, g=g)
    fwd = net.forward(params, x)
    W_inv = {i: torch.linalg.inv(params[f"W{i}"]) for i in range(1, L + 1)}

    def f_inverse(i, z):  # g_i = f_i⁻¹ : layer i → layer i−1
        return (net.activation(i).inverse(z) - params[f"b{i}"]) @ W_inv[i].T

    for i in range(1, L + 1):  # the feedback really is the inverse
        assert rel(f_inverse(i, fwd.h[i]), fwd.h[i - 1]) < 1e-12

    J = {i: output_jacobian(net, params, i, fwd.h[i]) for i in range(1, L + 1)}
    J_tp = tp.output_jacobians(net, params, fwd)  # the library's batched recursion agrees with autograd
    for i in J:
        assert rel(J_tp[i][0], J[i]) < 1e-12
    dL_dhL = net.output_gradient(fwd.output, y)
    gn_unit = {i: torch.linalg.solve(J[i], dL_dhL[0]) for i in J}  # J_i⁻¹ ∂ℒ/∂h_L
    gn_tp = tp.gn_displacements(net, params, fwd, dL_dhL, damping=0.0)
    for i in J:
        assert rel(gn_tp[i][0], gn_unit[i]) < 1e-10

    betas = [1e-1, 1e-2, 1e-3, 1e-4]
    err = {i: [] for i in J}
    for beta in betas:
        h_hat_L, _ = tp.output_target(net, fwd, y, beta)
        targets = tp.difference_target_chain(fwd.h, h_hat_L, f_inverse)
        # exact inverses ⇒ the difference correction is void: plain TP (ĥ_{i−1} = g_i(ĥ_i)) gives the same
        plain = {L: h_hat_L}
        for i in range(L, 1, -1):
            plain[i - 1] = f_inverse(i, plain[i])
        for i in J:
            tp_disp = (targets[i] - fwd.h[i])[0]
            gn_disp = -beta * gn_unit[i]
            assert rel(plain[i], targets[i]) < 1e-8
            err[i].append(rel(tp_disp, gn_disp))
    print("\nLemma 1 / Thm 2: ‖(ĥ_i−h_i) − (−J_i⁻¹e)‖/‖J_i⁻¹e‖ for β =", betas)
    for i in J:
        print(f"  layer {i}: " + "  ".join(f"{e:.3e}" for e in err[i]))

    # layers L and L−1 see only the linear output layer above them: the Taylor expansion is exact
    for i in (L, L - 1):
        assert max(err[i]) < 1e-9, (i, err[i])
    # layers with a nonlinear layer above: first-order agreement, error ∝ β
    for i in range(1, L - 1):
        e = err[i]
        ratios = [e[k] / e[k + 1] for k in range(len(e) - 1)]
        print(f"  layer {i}: successive error ratios per decade of β: {[round(r, 2) for r in ratios]}")
        assert e[0] > 1e-2  # a genuinely nonlinear case: at β = 0.1 TP and GN targets differ …
        assert all(r > 5.0 for r in ratios), ratios  # … but the gap closes at least ∝ β …
        assert all(8.0 < r < 12.5 for r in ratios[-2:]), ratios  # … and exactly ∝ β asymptotically
        assert e[-1] < 1e-3


# ------------------------------------------------------------------------------------------ Theorem 4
def test_theorem4_drl_drives_direct_linear_feedback_to_jacobian_pseudoinverse():
    """DDTP-linear on a fixed nonlinear (tanh) network and one fixed input: SGD on the DRL (small σ, no
    weight decay, fresh noise every step) drives every Q_i to J_{f̄ i,L}⁺ with J = ∂h_L/∂h_i (n_L < n_i, so a
    genuine pseudo-inverse).  The DRL's minimiser is J⁺ + O(σ²); the residual error is SGD noise."""
    g = gen(1)
    sigma = 0.01
    rule = tp.make_rule("ddtp-linear", target_stepsize=0.01, sigma=sigma)
    net = rule.build_network((6, 8, 7, 3), hidden_activation="tanh", loss="mse")
    params = random_biases(net, net.init_params(g), g, 0.2)
    x = randn(1, 6, g=g)
    B = 512  # the one sample, repeated: B independent noise draws per step
    fwd = net.forward(params, x.expand(B, -1))
    fwd1 = net.forward(params, x)
    J_pinv = {i: torch.linalg.pinv(output_jacobian(net, params, i, fwd1.h[i])) for i in range(1, net.L)}
    fb0 = rule.init_feedback(net, g)
    last, avg = train_feedback_sgd(rule, net, params, fb0, fwd, steps=2000, lr=2.0, noise_gen=gen(2))

    print("\nThm 4 (DDTP-linear, DRL, σ = 0.01): ‖Q_i − J_i⁺‖/‖J_i⁺‖")
    for i, Jp in J_pinv.items():
        e0, e_last, e_avg = rel(fb0[f"Q{i}"], Jp), rel(last[f"Q{i}"], Jp), rel(avg[f"Q{i}"], Jp)
        print(f"  layer {i} ({tuple(Jp.shape)}): init {e0:.3f}  last iterate {e_last:.4f}  "
              f"averaged {e_avg:.4f}")
        assert e0 > 0.5
        assert e_last < 0.1
        assert e_avg < 0.02

    # Consequence (Fig. 2): with Q_i ≈ J_i⁺ the DDTP update of W_i has (almost) no component in the null
    # space of ∂h_L/∂vec(W_i); with the random initial feedback it has a large one.  (GNT: exactly none —
    # this holds for nonlinear networks too at batch size 1.)
    y = randn(1, 3, g=g)
    gnt = tp.make_rule("gnt").forward_update(net, params, {}, x, y).forward_grads
    trained = rule.forward_update(net, params, avg, x, y).forward_grads
    initial = rule.forward_update(net, params, fb0, x, y).forward_grads
    for i in range(1, net.L):
        Jw = weight_jacobian(net, params, i, x)
        rho = [null_space_fraction(Jw, u[f"W{i}"]) for u in (gnt, trained, initial)]
        print(f"  layer {i}: null-space fraction of ΔW: GNT {rho[0]:.1e}  DDTP trained {rho[1]:.4f}  "
              f"DDTP initial {rho[2]:.3f}")
        assert rho[0] < 1e-10
        assert rho[1] < 0.05
        assert rho[2] > 0.3


def _orthogonal_noise_design(M: int, n: int, sigma: float, g: torch.Generator) -> torch.Tensor:
    """M noise vectors in ℝⁿ (M even, n ≤ M/2) whose empirical mean is exactly 0 and empirical second
    moment exactly σ²I:  E = σ√(M/2)·[U; −U] with U (M/2 × n) having orthonormal columns."""
    U, _ = torch.linalg.qr(randn(M // 2, n, g=g))
    return sigma * math.sqrt(M / 2) * torch.cat([U, -U])


def _drl_minimisers(rule, net, params, fwd, designs, g, tol):
    """{i: (Q*_i, c·D_i)}: the exact minimiser Q* = E D⁺ of a direct rule's DRL for every hidden layer, read off
    the rule's own gradients ∇_Q = c(Q D − E) at Q = 0 (−c E) and Q = [I; 0] (c([I; 0] D − E)) with the noise
    σ·``designs``; each checked to be a stationary point (‖∇_Q(Q*)‖ < tol·‖∇_Q(0)‖)."""
    n_L = net.sizes[-1]
    zero = {k: torch.zeros_like(v) for k, v in rule.init_feedback(net, g).items()}
    probe = {k: (torch.eye(*v.shape, dtype=DT) if k[0] == "Q" else v) for k, v in zero.items()}
    noise = {i: rule.hp["sigma"] * E for i, E in designs.items()}
    G0, _ = rule.feedback_gradients(net, params, zero, fwd, noise=noise)
    G1, _ = rule.feedback_gradients(net, params, probe, fwd, noise=noise)
    out = {}
    for i in designs:
        cD = (G1[f"Q{i}"] - G0[f"Q{i}"])[:n_L]
        Q_star = -G0[f"Q{i}"] @ torch.linalg.pinv(cD, hermitian=True, rtol=1e-10)
        G_star, _ = rule.feedback_gradients(net, params, {**zero, f"Q{i}": Q_star}, fwd, noise=noise)
        assert G_star[f"Q{i}"].norm() < tol * G0[f"Q{i}"].norm()  # it is a minimiser
        out[i] = Q_star, cD
    return out


def test_theorem4_drl_minimiser_tends_to_jacobian_pseudoinverse_as_sigma_vanishes():
    """The DRL of DDTP-linear is quadratic in Q_i:  ∇_Q = c(Q D − E) with D = Σ δδᵀ, E = Σ εδᵀ,
    δ = F_{i→L}(h_i + ε) − h_L.  Its exact minimiser Q* = E D⁻¹ is read off the rule's own gradients at
    Q = 0 and Q = [I; 0].  With an antithetic noise design of exact second moment σ²I (no sampling error),
    Q* = J⁺ + O(σ²) when a nonlinearity lies between layer i and the output, and Q* = J⁺ for every σ
    when the path is linear (last hidden layer → linear output)."""
    g = gen(1)
    net = tp.make_rule("ddtp-linear", target_stepsize=0.01, sigma=0.1).build_network(
        (6, 8, 7, 3), hidden_activation="tanh", loss="mse")
    params = random_biases(net, net.init_params(g), g, 0.2)
    x = randn(1, 6, g=g)
    M, n_L = 16, net.sizes[-1]
    fwd = net.forward(params, x.expand(M, -1))
    fwd1 = net.forward(params, x)
    J_pinv = {i: torch.linalg.pinv(output_jacobian(net, params, i, fwd1.h[i])) for i in range(1, net.L)}
    designs = {i: _orthogonal_noise_design(M, net.sizes[i], 1.0, g) for i in J_pinv}
    sigmas = [0.4, 0.2, 0.1, 0.05, 0.025, 0.0125]
    err = {i: [] for i in J_pinv}
    for sigma in sigmas:
        rule = tp.make_rule("ddtp-linear", target_stepsize=0.01, sigma=sigma)
        for i, (Q_star, _) in _drl_minimisers(rule, net, params, fwd, designs, g, 1e-10).items():
            err[i].append(rel(Q_star, J_pinv[i]))
    print(f"\nThm 4, σ → 0: ‖Q*(σ) − J_i⁺‖/‖J_i⁺‖ of the DRL minimiser, σ = {sigmas}")
    for i, e in err.items():
        print(f"  layer {i}: " + "  ".join(f"{v:.2e}" for v in e))
    e = err[1]  # tanh layer 2 between h_1 and the output
    ratios = [a / b for a, b in zip(e, e[1:])]
    print(f"  layer 1: ratios per halving of σ: {[round(r, 3) for r in ratios]}")
    assert e[0] > 0.05  # a real finite-σ bias …
    assert all(3.0 < r < 5.0 for r in ratios) and all(3.9 < r < 4.1 for r in ratios[-2:])  # … ∝ σ²
    assert e[-1] < 1e-3
    assert max(err[2]) < 1e-12  # linear path: exact at every σ


# ----------------------------------------------------------------------- Appendix D: DDTP-GGN
def _hessian_root(net: tp.MLP, h_L: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(R, R⁺) of one sample: the symmetric square root of autograd's Hessian of its cross-entropy w.r.t. the
    output, and its pseudo-inverse (the ones direction, H's null space, dropped by a relative threshold)."""
    H = torch.autograd.functional.hessian(
        lambda h: torch.nn.functional.cross_entropy(h.unsqueeze(0), y.reshape(1)), h_L.detach())
    s, V = torch.linalg.eigh(H)
    keep = s > 1e-12 * s.max()
    root = torch.where(keep, s.clamp_min(0).sqrt(), torch.zeros_like(s))
    return V @ torch.diag(root) @ V.T, V @ torch.diag(torch.where(keep, 1 / root, 0 * s)) @ V.T


def test_appendixD_ddtp_ggn_drl_minimiser_is_the_pinv_of_the_transformed_jacobian_and_propagates_ggn_targets():
    """Paper Appendix D (eqs. 191–197), softmax + cross-entropy (H = diag(p) − ppᵀ, rank n_L − 1), one sample:

    1. The DRL of DDTP-GGN (the output read through R = H^{1/2}) is quadratic in Q_i with minimiser
       Q*(σ) = E D⁺ (D = Σ δ̃δ̃ᵀ, E = Σ εδ̃ᵀ, δ̃ = R(F_{i→L}(h_i + ε) − h_L)), read off the rule's own gradients
       with an antithetic noise design; Q*(σ) → (R J_i)⁺ ∝ σ² (exactly, for the linear path of the last
       hidden layer).
    2. With Q_i = (R J_i)⁺ the propagated targets are the undamped GGN targets, for every β:
       ĥ_i − h_i = −β (J_iᵀ H J_i)⁺ J_iᵀ ∂ℒ/∂h_L (eq. 197); and they reach the transformed output target to
       first order: ‖R F_{i→L}(ĥ_i) − ẑ‖ / ‖ẑ − z‖ = O(β) (eq. 196; exact for the last hidden layer)."""
    g = gen(3)
    rule0 = tp.make_rule("ddtp-ggn", target_stepsize=0.01, sigma=0.1)
    net = rule0.build_network((6, 8, 7, 3), hidden_activation="tanh", loss="cross_entropy")
    params = random_biases(net, net.init_params(g), g, 0.2)
    x, y = randn(1, 6, g=g), torch.tensor([1])
    fwd1 = net.forward(params, x)
    R, R_pinv = _hessian_root(net, fwd1.output[0], y[0])
    J = {i: output_jacobian(net, params, i, fwd1.h[i]) for i in range(1, net.L)}
    opt = {i: torch.linalg.pinv(R @ J[i], rtol=1e-10) for i in J}  # (R J_i)⁺, rank n_L − 1

    # 1. the DRL minimiser
    M, n_L = 16, net.sizes[-1]
    fwd = net.forward(params, x.expand(M, -1))
    designs = {i: _orthogonal_noise_design(M, net.sizes[i], 1.0, g) for i in J}
    sigmas = [0.2, 0.1, 0.05, 0.025]
    err = {i: [] for i in J}
    ones = torch.ones(n_L, dtype=DT)
    for sigma in sigmas:
        rule = tp.make_rule("ddtp-ggn", target_stepsize=0.01, sigma=sigma)
        for i, (Q_star, cD) in _drl_minimisers(rule, net, params, fwd, designs, g, 1e-9).items():
            assert (cD @ ones).norm() < 1e-10 * cD.norm()  # δ̃ never leaves range(R) ⊥ 1: D is singular …
            assert torch.linalg.matrix_rank(cD, rtol=1e-8).item() == n_L - 1  # … of rank n_L − 1
            err[i].append(rel(Q_star, opt[i]))
    print(f"\nAppendix D, σ → 0: ‖Q*(σ) − (R J_i)⁺‖/‖(R J_i)⁺‖, σ = {sigmas}")
    for i, e in err.items():
        print(f"  layer {i}: " + "  ".join(f"{v:.2e}" for v in e))
    ratios = [a / b for a, b in zip(err[1], err[1][1:])]
    assert err[1][0] > 1e-2 and all(3.0 < r < 5.0 for r in ratios) and 3.9 < ratios[-1] < 4.1, ratios  # ∝ σ²
    assert max(err[2]) < 1e-10  # linear path: exact at every σ

    # 2. GGN targets at the optimum
    e = net.output_gradient(fwd1.output, y)[0]  # ∂ℒ/∂h_L
    H = R @ R
    ggn = {i: torch.linalg.pinv(J[i].T @ H @ J[i], hermitian=True, rtol=1e-10) @ (J[i].T @ e) for i in J}
    fb = {k: (opt[int(k[1:])] if k[0] == "Q" else torch.zeros_like(v)) for k, v in rule0.init_feedback(net, g).items()}
    betas = [1e-1, 1e-2, 1e-3, 1e-4]
    reach = {i: [] for i in J}
    for beta in betas:
        rule = tp.make_rule("ddtp-ggn", target_stepsize=beta, sigma=0.1)
        targets = rule.forward_update(net, params, fb, fwd1, y).targets
        z_step = -beta * R_pinv @ e  # ẑ − z
        for i in J:
            assert rel((targets[i] - fwd1.h[i])[0], -beta * ggn[i]) < 1e-9
            reach[i].append(rel(R @ (net.forward_from(params, i, targets[i])[0] - fwd1.output[0]), z_step))
    print(f"  ‖R F(ĥ_i) − ẑ‖/‖ẑ − z‖ for β = {betas}: "
          + "; ".join(f"layer {i}: " + " ".join(f"{v:.1e}" for v in r) for i, r in reach.items()))
    ratios = [a / b for a, b in zip(reach[1], reach[1][1:])]
    assert reach[1][0] > 1e-2 and all(r > 5.0 for r in ratios) and all(9.5 < r < 10.5 for r in ratios[-2:]), \
        ratios  # first order: the gap closes ∝ β
    assert max(reach[2]) < 1e-9  # the last hidden layer's path is linear: exact


# ------------------------------------------------------------------------- DTP layer-wise inverses
def _linear_contracting_network(seed: int):
    """Linear network 10 → 8 → 6 → 4 → 2 with random (non-orthogonal) Xavier layers and nonzero biases."""
    g = gen(seed)
    net = tp.MLP.build((10, 8, 6, 4, 2), hidden_activation="linear", output_activation="linear",
                       bias=True, loss="mse")
    params = random_biases(net, net.init_params(g), g, 0.2)
    x = randn(1, 10, g=g, scale=0.2)
    y = randn(1, 2, g=g)
    return net, params, x, y, g


def _dtp_linear_rule(sigma: float):
    return tp.make_rule("dtp", target_stepsize=0.1, sigma=sigma, fb_activation="linear")


def test_dtp_layerwise_loss_minimiser_is_least_squares_inverse():
    """What DTP's reconstruction loss converges to (SM A.2, eq. 42–44), linear layers and linear feedback:
    for inputs u = h + ε of layer i−1 the minimiser of E‖Q_i(W_i u + b_i) + d_i − u‖² is

        Q* = C W_iᵀ (W_i C W_iᵀ)⁻¹,   d* = μ − Q*(W_i μ + b_i),   C = Cov(h) + σ²I,  μ = E h,

    which is W_i⁺ exactly when the data have no spread (C = σ²I, white noise) and tends to W_i⁺ as the
    spread becomes small relative to σ.  The loss is quadratic in u, so with a noise design whose
    empirical moments are exact the rule's gradient at (Q*, d*) must vanish to round-off."""
    net, params, _, _, g = _linear_contracting_network(5)
    sigma = 0.5
    rule = _dtp_linear_rule(sigma)
    M, N = 20, 6  # noise vectors per sample (2·max width), distinct samples
    print("\nDTP loss minimiser (linear): ‖Q* − W_i⁺‖/‖W_i⁺‖ and the rule's gradient there")
    for spread in (0.0, 0.05, 1.0):
        X = randn(1, 10, g=g, scale=0.3) + randn(N, 10, g=g, scale=spread)
        fwd0 = net.forward(params, X)
        Xr = X.repeat_interleave(M, dim=0)  # every sample paired with every noise vector
        fwd = net.forward(params, Xr)
        noise = {i: _orthogonal_noise_design(M, net.sizes[i - 1], sigma, g).repeat(N, 1)
                 for i in range(2, net.L + 1)}
        Q_star, d_star, W_pinv = {}, {}, {}
        for i in range(2, net.L + 1):
            H = fwd0.h[i - 1]
            mu = H.mean(0)
            C = (H - mu).T @ (H - mu) / N + sigma ** 2 * torch.eye(H.shape[1], dtype=DT)
            W, b = params[f"W{i}"], params[f"b{i}"]
            Q_star[f"Q{i}"] = C @ W.T @ torch.linalg.inv(W @ C @ W.T)
            d_star[f"d{i}"] = mu - Q_star[f"Q{i}"] @ (W @ mu + b)
            W_pinv[f"Q{i}"] = torch.linalg.pinv(W)
        grads, _ = rule.feedback_gradients(net, params, {**Q_star, **d_star}, fwd, noise=noise)
        # reference scale: the gradient at W⁺ with its own optimal bias (nonzero when the data spread)
        d_at_pinv = {f"d{i}": fwd0.h[i - 1].mean(0) - W_pinv[f"Q{i}"] @ fwd0.h[i].mean(0)
                     for i in range(2, net.L + 1)}
        grads_pinv, _ = rule.feedback_gradients(net, params, {**W_pinv, **d_at_pinv}, fwd, noise=noise)
        for i in range(2, net.L + 1):
            gq, gq_pinv = grads[f"Q{i}"].norm().item(), grads_pinv[f"Q{i}"].norm().item()
            dist = rel(Q_star[f"Q{i}"], W_pinv[f"Q{i}"])
            print(f"  spread {spread:4.2f} layer {i}: ‖Q*−W⁺‖/‖W⁺‖ = {dist:.2e}   ‖∇_Q‖ at Q*: {gq:.1e}"
                  f"   at W⁺: {gq_pinv:.1e}   ‖∇_d‖ at Q*: {grads[f'd{i}'].norm().item():.1e}")
            assert gq < 1e-12 and grads[f"d{i}"].norm() < 1e-12
            if spread == 0.0:
                assert dist < 1e-12 and gq_pinv < 1e-12
            elif spread == 0.05:
                assert dist < 0.05
            else:  # large spread relative to σ: the minimiser is not the pseudo-inverse
                assert dist > 0.1 and gq_pinv > 1e-3


@pytest.fixture(scope="module")
def dtp_trained():
    """The linear contracting network with DTP feedback (linear g) trained by SGD on the layer-wise
    reconstruction loss, white noise σ = 1, one fixed input (so its optimum is Q_i = W_i⁺ exactly)."""
    net, params, x, y, g = _linear_contracting_network(0)
    rule = _dtp_linear_rule(sigma=1.0)
    fb0 = rule.init_feedback(net, g)
    fwd = net.forward(params, x.expand(128, -1))
    _, avg = train_feedback_sgd(rule, net, params, fb0, fwd, steps=1000, lr=1.0, noise_gen=gen(2))
    return net, params, x, y, rule, fb0, avg


def _chain(mats):
    out = mats[0]
    for m in mats[1:]:
        out = out @ m
    return out


def test_dtp_feedback_converges_to_layerwise_pinvs_whose_product_is_not_the_pinv_of_the_product(dtp_trained):
    """§3.2: trained layer-wise, the DTP feedback path Q_2⋯Q_L (which maps the output displacement to the
    layer-1 target displacement) converges to W_2⁺⋯W_L⁺ — far from (W_L⋯W_2)⁺ = J_1⁺, the GN map."""
    net, params, x, y, rule, fb0, fb = dtp_trained
    L = net.L
    W_pinv = {i: torch.linalg.pinv(params[f"W{i}"]) for i in range(2, L + 1)}
    print("\nDTP (linear, white noise): ‖Q_i − W_i⁺‖/‖W_i⁺‖")
    for i in range(2, L + 1):
        e0, e = rel(fb0[f"Q{i}"], W_pinv[i]), rel(fb[f"Q{i}"], W_pinv[i])
        print(f"  layer {i}: init {e0:.3f}  trained {e:.4f}")
        assert e0 > 0.5 and e < 0.02
    # sanity: the trained path is what the rule uses — layer-1 target displacement = Q_2⋯Q_L (ĥ_L − h_L)
    res = rule.forward_update(net, params, fb, x, y)
    fwd = net.forward(params, x)
    prod_Q = _chain([fb[f"Q{i}"] for i in range(2, L + 1)])
    assert rel((res.targets[1] - fwd.h[1])[0], prod_Q @ (res.targets[L] - fwd.h[L])[0]) < 1e-10
    for lo in range(1, L - 1):  # feedback path from the output to layer lo
        prod_Q = _chain([fb[f"Q{i}"] for i in range(lo + 1, L + 1)])
        prod_pinv = _chain([W_pinv[i] for i in range(lo + 1, L + 1)])
        pinv_prod = torch.linalg.pinv(_chain([params[f"W{i}"] for i in range(L, lo, -1)]))  # J_lo⁺
        assert rel(pinv_prod, output_jacobian(net, params, lo, fwd.h[lo]).pinverse()) < 1e-10
        a, b, c = rel(prod_Q, prod_pinv), rel(prod_pinv, pinv_prod), rel(prod_Q, pinv_prod)
        print(f"  path L→{lo}: ‖ΠQ − ΠW⁺‖/‖ΠW⁺‖ = {a:.4f};  ‖ΠW⁺ − (ΠW)⁺‖/‖(ΠW)⁺‖ = {b:.3f};  "
              f"‖ΠQ − (ΠW)⁺‖/‖(ΠW)⁺‖ = {c:.3f}")
        assert a < 0.03  # converged to the product of layer-wise pseudo-inverses …
        assert b > 0.3  # … which is far from the pseudo-inverse of the product
        assert c > 10 * a
    # the last hidden layer is the exception: its path is one layer, W_L⁺ = J_{L−1}⁺
    assert rel(W_pinv[L], output_jacobian(net, params, L - 1, fwd.h[L - 1]).pinverse()) < 1e-10


def test_dtpdrl_feedback_path_converges_to_pinv_of_the_product():
    """§3.3, the contrast: the same layer-wise linear feedback trained with the DRL through the output
    (DTPDRL) makes every feedback path Q_{i+1}⋯Q_L converge to J_i⁺ = (W_L⋯W_{i+1})⁺ (Theorem 4 applied to
    the composite map g_{i+1}∘…∘g_L), not to the product of layer-wise pseudo-inverses."""
    net, params, x, _, g = _linear_contracting_network(0)
    rule = tp.make_rule("dtpdrl", target_stepsize=0.1, sigma=0.1, fb_activation="linear")
    fb0 = rule.init_feedback(net, g)
    _, fb = train_feedback_sgd(rule, net, params, fb0, net.forward(params, x.expand(128, -1)),
                               steps=1000, lr=1.0, noise_gen=gen(2))
    fwd = net.forward(params, x)
    L = net.L
    print("\nDTPDRL (linear, DRL): feedback path L→i vs J_i⁺ and vs the product of layer-wise pinvs")
    for lo in range(1, L):
        J_pinv = output_jacobian(net, params, lo, fwd.h[lo]).pinverse()
        prod_pinv = _chain([torch.linalg.pinv(params[f"W{i}"]) for i in range(lo + 1, L + 1)])
        e0 = rel(_chain([fb0[f"Q{i}"] for i in range(lo + 1, L + 1)]), J_pinv)
        prod_Q = _chain([fb[f"Q{i}"] for i in range(lo + 1, L + 1)])
        a, b = rel(prod_Q, J_pinv), rel(prod_Q, prod_pinv)
        print(f"  path L→{lo}: init {e0:.3f}  ‖ΠQ − J⁺‖/‖J⁺‖ = {a:.4f};  ‖ΠQ − ΠW⁺‖/‖ΠW⁺‖ = {b:.3f}")
        assert e0 > 0.5 and a < 0.03
        if lo < L - 1:
            assert b > 0.3


# --------------------------------------------------------------------- Theorem 5 / Corollary S6.1
def test_theorem5_gnt_updates_have_no_null_space_component_dtp_updates_do(dtp_trained):
    """Contracting linear network, batch size 1.  GNT (λ = 0): vec(ΔW_i) lies in the row space of
    J_W = ∂h_L/∂vec(W_i) (minimum-norm update) and moves the output along −∂ℒ/∂h_L.  DTP with layer-wise
    white-noise feedback (trained, and its exact optimum W⁺): also moves the output along −∂ℒ/∂h_L
    (Corollary S6.1), but has a null-space component in every layer below L−1; its row-space part is β
    times the GNT update."""
    net, params, x, y, rule, _, fb_trained = dtp_trained
    L = net.L
    fb_exact = {**fb_trained, **{f"Q{i}": torch.linalg.pinv(params[f"W{i}"]) for i in range(2, L + 1)}}
    beta = rule.hp["target_stepsize"]
    dL_dhL = net.output_gradient(net.forward(params, x).output, y)[0]
    upd = {"GNT": tp.make_rule("gnt", gn_damping=0.0).forward_update(net, params, {}, x, y).forward_grads,
           "DTP W⁺": rule.forward_update(net, params, fb_exact, x, y).forward_grads,
           "DTP trained": rule.forward_update(net, params, fb_trained, x, y).forward_grads}
    print("\nThm 5 / Cor S6.1 (linear 10-8-6-4-2, B = 1): null-space fraction ‖P_N ΔW_i‖/‖ΔW_i‖, "
          "cos(J_W ΔW_i, ∂ℒ/∂h_L)")
    for i in range(1, L + 1):
        Jw = weight_jacobian(net, params, i, x)
        rho = {k: null_space_fraction(Jw, u[f"W{i}"]) for k, u in upd.items()}
        cos = {k: cosine(Jw @ u[f"W{i}"].flatten(), dL_dhL) for k, u in upd.items()}
        print(f"  layer {i}: " + "   ".join(f"{k}: {rho[k]:.2e} / {cos[k]:+.6f}" for k in upd))
        # both push the output along the negative gradient (the update is descended: −ΔW)
        assert cos["GNT"] > 1 - 1e-10 and cos["DTP W⁺"] > 1 - 1e-10
        assert cos["DTP trained"] > 0.99
        assert rho["GNT"] < 1e-10  # Theorem 5: minimum norm
        # the row-space part of the DTP update is β × the GNT update (proof of Corollary S6.1)
        P_row = torch.linalg.pinv(Jw) @ Jw
        row_dtp = P_row @ upd["DTP W⁺"][f"W{i}"].flatten()
        assert rel(row_dtp, beta * upd["GNT"][f"W{i}"].flatten()) < 1e-9
        if i >= L - 1:  # W_L⁺ = J_{L−1}⁺ and the output layer gets the same gradient target
            assert rho["DTP W⁺"] < 1e-10
            assert rho["DTP trained"] < 0.05
        else:  # Corollary S6.1: a substantial part of the DTP update does not affect the output
            assert rho["DTP W⁺"] > 0.3
            assert abs(rho["DTP trained"] - rho["DTP W⁺"]) < 0.05
            # hence, per unit of output change, DTP's update is larger than GNT's by 1/√(1 − ρ²) (eq. 95–96)
            n_gnt = upd["GNT"][f"W{i}"].norm() / (Jw @ upd["GNT"][f"W{i}"].flatten()).norm()
            n_dtp = upd["DTP W⁺"][f"W{i}"].norm() / (Jw @ upd["DTP W⁺"][f"W{i}"].flatten()).norm()
            assert abs((n_dtp / n_gnt).item() * math.sqrt(1 - rho["DTP W⁺"] ** 2) - 1) < 1e-8


# ------------------------------------------------------------------------------------------ Theorem 6
def test_theorem6_gnt_updates_lie_within_90_degrees_of_the_loss_gradient():
    """Linear networks of arbitrary architecture (contracting, expanding, bottlenecks; with/without
    biases), arbitrary batch size and both losses: ⟨ΔW_GNT, ∇ℒ⟩ > 0 layer by layer, hence overall."""
    g = gen(6)
    gnt = tp.make_rule("gnt", gn_damping=0.0)
    bp = tp.make_rule("bp")
    cos_all, cos_layer_min = [], 1.0
    for trial in range(40):
        L = int(torch.randint(1, 5, (1,), generator=g))
        sizes = [int(n) for n in torch.randint(1, 9, (L + 1,), generator=g)]
        sizes[-1] = max(sizes[-1], 2)
        B = [1, 2, 5, 16][trial % 4]
        loss = "mse" if trial % 2 == 0 else "cross_entropy"
        net = tp.MLP.build(sizes, hidden_activation="linear", output_activation="linear",
                           bias=bool(trial % 3), loss=loss)
        params = random_biases(net, net.init_params(g), g, 0.3)
        x = randn(B, sizes[0], g=g)
        y = randn(B, sizes[-1], g=g) if loss == "mse" else torch.randint(0, sizes[-1], (B,), generator=g)
        upd = gnt.forward_update(net, params, {}, x, y).forward_grads
        grad = bp_gradients(net, params, x, y)
        grad_tp = bp.forward_update(net, params, {}, x, y).forward_grads
        for k in grad:
            assert rel(grad_tp[k], grad[k]) < 1e-10  # tp's BP rule matches autograd
        for i in range(1, L + 1):
            keys = [k for k in (f"W{i}", f"b{i}") if k in grad]
            u = torch.cat([upd[k].flatten() for k in keys])
            v = torch.cat([grad[k].flatten() for k in keys])
            c = cosine(u, v)
            cos_layer_min = min(cos_layer_min, c)
            assert c > 1e-6, (trial, sizes, B, loss, i, c)
        u = torch.cat([upd[k].flatten() for k in grad])
        v = torch.cat([grad[k].flatten() for k in grad])
        cos_all.append(cosine(u, v))
    print(f"\nThm 6: 40 random linear networks: cos(ΔW_GNT, ∇ℒ) min {min(cos_all):.3f}, "
          f"median {sorted(cos_all)[20]:.3f}; smallest per-layer cosine {cos_layer_min:.3f}")
    assert min(cos_all) > 0


def test_theorem6_gnt_converges_to_the_global_minimum_of_a_linear_network():
    """Full-batch GNT with a small step on a linear network able to represent every affine map: the
    loss decreases monotonically to the least-squares minimum (Theorem 6, second part)."""
    g = gen(7)
    net = tp.MLP.build((4, 6, 3), hidden_activation="linear", output_activation="linear", bias=True,
                       loss="mse")
    params = net.init_params(g)
    N = 16
    x = randn(N, 4, g=g)
    y = x @ randn(3, 4, g=g).T + randn(N, 3, g=g, scale=0.5)  # not exactly representable
    X1 = torch.cat([x, torch.ones(N, 1, dtype=DT)], 1)
    ols = X1 @ torch.linalg.lstsq(X1, y).solution
    loss_min = net.loss_value(ols, y).item()
    gnt = tp.make_rule("gnt")
    losses = []
    lr = 2.0
    for _ in range(600):
        res = gnt.forward_update(net, params, {}, x, y)
        losses.append(res.loss.item())
        params = {k: params[k] - lr * res.forward_grads[k] for k in params}
    excess = [l_ - loss_min for l_ in losses]
    print(f"\nThm 6 (GNT, full batch): loss {losses[0]:.4f} → {losses[-1]:.6f}, least-squares minimum "
          f"{loss_min:.6f}; excess {excess[0]:.2e} → {excess[-1]:.2e}")
    assert all(b <= a + 1e-12 for a, b in zip(losses, losses[1:]))  # monotone descent
    assert excess[-1] < 1e-4 * excess[0]


# --------------------------------------------------------------------------------------- Theorem S12
def test_theoremS12_scaled_transpose_of_wide_random_matrix_approximates_pseudoinverse():
    """A ∈ ℝ^{n×N}, zero mean, N ≫ n: c·Aᵀ ≈ A⁺, the relative error decaying like √(n/N).  Checked for
    Gaussian entries (c = 1/(N·Var) and the best scalar) and for rows uniform in the unit ball (the
    theorem's setting, best scalar); plus the consequence that J⁺e and Jᵀe (GNT vs BP) align."""
    n, widths, seeds = 4, [16, 64, 256, 1024, 4096], range(10)
    g = gen(12)

    def ball_rows(N):
        u = randn(n, N, g=g)
        u = u / u.norm(dim=1, keepdim=True)
        r = torch.rand(n, 1, generator=g, dtype=DT) ** (1.0 / N)
        return u * r

    stats = {"gauss c=1/(N var)": [], "gauss best c": [], "ball best c": [], "penrose": [], "angle": []}
    for N in widths:
        acc = {k: [] for k in stats}
        for _ in seeds:
            A = randn(n, N, g=g)  # Var = 1
            Ap = torch.linalg.pinv(A)
            acc["gauss c=1/(N var)"].append(rel(A.T / N, Ap))
            c = (A.T * Ap).sum() / (A.T * A.T).sum()
            acc["gauss best c"].append(rel(c * A.T, Ap))
            X = c * A.T  # Definition S1: ε-Penrose conditions A X A ≈ A, X A X ≈ X
            acc["penrose"].append(max(rel(A @ X @ A, A), rel(X @ A @ X, X)))
            e = randn(n, g=g)
            acc["angle"].append(math.degrees(math.acos(min(1.0, cosine(Ap @ e, A.T @ e)))))
            Bm = ball_rows(N)
            Bp = torch.linalg.pinv(Bm)
            cb = (Bm.T * Bp).sum() / (Bm.T * Bm.T).sum()
            acc["ball best c"].append(rel(cb * Bm.T, Bp))
        for k in stats:
            stats[k].append(sum(acc[k]) / len(acc[k]))
    print(f"\nThm S12: n = {n}, N = {widths} (mean over {len(seeds)} draws)")
    for k, v in stats.items():
        print(f"  {k:18s}: " + "  ".join(f"{e:.4f}" for e in v))
    for k in ("gauss c=1/(N var)", "gauss best c", "ball best c", "penrose", "angle"):
        v = stats[k]
        assert all(a > b for a, b in zip(v, v[1:])), (k, v)  # better as the width grows
        # ~ 1/√N: ×16 in width ⇒ ÷4 in error (loose band)
        assert all(2.5 < v[j] / v[j + 2] < 7.0 for j in range(len(v) - 2)), (k, v)
    assert stats["gauss best c"][-1] < 0.05 and stats["ball best c"][-1] < 0.05
    assert stats["angle"][-1] < 3.0
