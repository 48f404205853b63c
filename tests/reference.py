"""A slow, per-sample, obviously-correct twin of the rules' formulas (docs/algorithms.md; tests only).

Everything here is written straight from the paper's equations as the official code computes them (the section
numbers cited below; docs/deviations.md), one sample at a time, with column vectors (a_i = W_i h_{i-1} + b_i)
and autograd / torch.func for every derivative.  Nothing is imported from ``tp``: inputs are plain dicts of
tensors (forward parameters ``W1, b1, …``, feedback parameters ``Q1, d1, …, R, r``, noise ``{block: ε}``
already scaled by σ) plus the network description below.

Speed is irrelevant (tiny networks, a handful of samples); readability is the point.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

# φ of the forward layers and ψ of the feedback maps.  leaky_tanh is the project's invertible variant
# φ(a) = tanh(a) + 0.1·a.
LEAKY_TANH_SLOPE = 0.1
ACTIVATIONS = {
    "tanh": torch.tanh,
    "linear": lambda a: a,
    "leaky_tanh": lambda a: torch.tanh(a) + LEAKY_TANH_SLOPE * a,
    "relu": torch.relu,
}



@dataclass(frozen=True)
class Form:
    """What this reference needs to know of a rule, taken from the rule's own declaration (class attributes of a
    rule of ``tp.rules``, read by :func:`form_of` without importing ``tp``), so that a new rule of a known form
    needs no change here.

    ``family``: "direct" (g_i from the output space to layer i) or "layerwise" (g_k from layer k to k−1);
    ``loss``: the feedback loss, "reconstruction" (DTP's), "drl", "control" or None (fixed feedback);
    ``random_layer``: layers i ≤ L−2 read the fixed random layer s(z); ``recurrent_input``: and their own h_i;
    ``output_space``: "identity" or "hessian-root" (z = R h_L); ``fb_activation``: ψ unless the configuration
    sets it."""

    family: str
    loss: str | None
    random_layer: bool = False
    recurrent_input: bool = False
    output_space: str = "identity"
    fb_activation: str = "linear"


def form_of(rule_class) -> Form:
    """The :class:`Form` a rule class declares (``feedback_family``, ``feedback_loss``, ``random_layer``,
    ``recurrent_input``, ``output_space``, its ``fb_activation`` default)."""
    if rule_class.feedback_family not in ("direct", "layerwise"):
        raise ValueError(f"rule {rule_class.name!r} declares no feedback family: the reference has no targets for it")
    return Form(rule_class.feedback_family, rule_class.feedback_loss, getattr(rule_class, "random_layer", False),
                getattr(rule_class, "recurrent_input", False), getattr(rule_class, "output_space", "identity"),
                rule_class.hyperparameters.get("fb_activation", "linear"))


DTP_SIGMA_FLOOR = 0.02  # c(σ) = 1/max(σ, 0.02)²  (docs/algorithms.md#dtp-and-dtp-pre-trained)


# ------------------------------------------------------------------------------------------- network
@dataclass
class Net:
    """sizes (n_0…n_L), the activation name of each layer 1…L and the minibatch loss.
    A layer has a bias iff ``b{i}`` is in the parameter dict."""

    sizes: list
    activations: list
    loss: str = "cross_entropy"

    @property
    def L(self) -> int:
        return len(self.sizes) - 1

    def layer(self, params, i, h_prev):
        """f_i for one sample: h_i = φ_i(W_i h_{i-1} + b_i)."""
        a = params[f"W{i}"] @ h_prev
        if f"b{i}" in params:
            a = a + params[f"b{i}"]
        return ACTIVATIONS[self.activations[i - 1]](a)

    def forward(self, params, x):
        """[h_0, h_1, …, h_L] of one sample."""
        h = [x]
        for i in range(1, self.L + 1):
            h.append(self.layer(params, i, h[-1]))
        return h

    def forward_from(self, params, i, h_i):
        """F_{i→L}: feed h_i through layers i+1…L (identity for i = L)."""
        h = h_i
        for k in range(i + 1, self.L + 1):
            h = self.layer(params, k, h)
        return h

    def minibatch_loss(self, outputs, y):
        """ℒ of the stacked outputs (B, n_L): PyTorch CrossEntropyLoss / MSELoss, mean reduction."""
        if self.loss == "cross_entropy":
            return F.cross_entropy(outputs, y)
        return F.mse_loss(outputs, y)


def forward_all(net, params, x):
    """Per-sample forward passes: a list (over samples b) of [h_0^b … h_L^b]."""
    return [net.forward(params, x[b]) for b in range(x.shape[0])]


def output_gradients(net, params, x, y):
    """∂ℒ/∂h_L^b of the minibatch-mean loss, by autograd on the stacked outputs: (B, n_L)."""
    outputs = torch.stack([hs[-1] for hs in forward_all(net, params, x)]).detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(net.minibatch_loss(outputs, y), outputs)
    return grad


def stack(per_sample: list[dict]) -> dict:
    """[{i: v^b}]_b -> {i: (B, …)}."""
    return {i: torch.stack([d[i] for d in per_sample]) for i in per_sample[0]}


# ------------------------------------------------------------------------------------- feedback maps
def direct_feedback_map(form, fb, L, i, z, h_i, fb_activation):
    """g_i(z; h_i) from the output space to hidden layer i (docs/algorithms.md#dfa,
    docs/algorithms.md#the-learning-rules), one sample."""
    psi = ACTIVATIONS[fb_activation]
    features = z
    if form.random_layer and i <= L - 2:  # layer L−1 bypasses the random layer
        s = torch.tanh(fb["R"] @ z + fb["r"])  # fixed random hidden layer
        features = torch.cat([s, h_i]) if form.recurrent_input else s
    u = fb[f"Q{i}"] @ features
    if f"d{i}" in fb:
        u = u + fb[f"d{i}"]
    return psi(u)


def layerwise_feedback_map(fb, i, z, fb_activation):
    """g_i: layer i -> layer i−1 (DTP, DTPDRL; docs/algorithms.md#dtp-and-dtp-pre-trained), one sample."""
    return ACTIVATIONS[fb_activation](fb[f"Q{i}"] @ z + fb[f"d{i}"])


# ------------------------------------------------------------------------------------------- targets
def hessian_root(net, h_L, y_b, delta=0.0):
    """(R, R⁺) of one sample (DDTP-GGN, paper Appendix D): R the symmetric PSD square root of
    H_δ = H + δ·P, H by autograd (:func:`per_sample_loss_hessian`), P the projector onto H's range
    (cross-entropy: I − 11ᵀ/n_L, the ones vector being H's null space; mse: I), R⁺ its pseudo-inverse; both
    from one full eigendecomposition of H_δ, eigenvalues below 1e-12 of the largest taken as 0."""
    H = per_sample_loss_hessian(net, h_L, y_b)
    n = H.shape[0]
    P = torch.eye(n, dtype=H.dtype)
    if net.loss == "cross_entropy":
        P = P - torch.ones(n, n, dtype=H.dtype) / n
    s, V = torch.linalg.eigh(H + delta * P)
    keep = s > 1e-12 * s.max()
    root = torch.where(keep, s.clamp_min(0).sqrt(), torch.zeros_like(s))
    inv_root = torch.where(keep, 1 / root, torch.zeros_like(s))
    return V @ torch.diag(root) @ V.T, V @ torch.diag(inv_root) @ V.T


def tp_targets(form, net, params, fb, x, y, beta, fb_activation=None, hessian_damping=0.0):
    """{i: ĥ_i} (B, n_i) for every layer 1…L of a TP-family rule or DFA (docs/algorithms.md#the-output-target,
    docs/algorithms.md#the-learning-rules).  DDTP-GGN's feedback reads z = R h_L and ẑ = R h_L − R⁺(h_L − ĥ_L) (paper
    Appendix D, eqs. 192, 196)."""
    psi = fb_activation or form.fb_activation
    L = net.L
    dL_dhL = output_gradients(net, params, x, y)
    per_sample = []
    for b, h in enumerate(forward_all(net, params, x)):
        t = {L: h[L] - beta * dL_dhL[b]}  # ĥ_L = h_L − β ∂ℒ/∂h_L
        if form.family == "direct":
            z, z_hat = h[L], t[L]
            if form.output_space == "hessian-root":
                R, R_pinv = hessian_root(net, h[L], y[b], hessian_damping)
                z, z_hat = R @ h[L], R @ h[L] - R_pinv @ (h[L] - t[L])
            for i in range(1, L):  # ĥ_i = g_i(ĥ_L) + h_i − g_i(h_L)
                g = lambda v: direct_feedback_map(form, fb, L, i, v, h[i], psi)  # noqa: E731
                t[i] = g(z_hat) + h[i] - g(z)
        elif form.family == "layerwise":
            for i in range(L, 1, -1):  # ĥ_{i−1} = g_i(ĥ_i) + h_{i−1} − g_i(h_i)
                t[i - 1] = (layerwise_feedback_map(fb, i, t[i], psi) + h[i - 1]
                            - layerwise_feedback_map(fb, i, h[i], psi))
        else:
            raise ValueError(f"not a target-propagation form: {form!r}")
        per_sample.append(t)
    return stack(per_sample)


def gnt_targets(net, params, x, y, damping):
    """{i: ĥ_i = h_i − Δ_i} for every layer 1…L with Gauss–Newton displacements (docs/algorithms.md#gnt,
    docs/algorithms.md#computing-gn-displacements):
    J_i^b = ∂h_L/∂h_i by torch.func.jacrev, Δ = J⁺g (λ = 0, explicit pinv) or Jᵀ(JJᵀ + λI)⁻¹g.
    ``damping``: one λ, or a list with one λ per layer 1…L."""
    L = net.L
    lams = [damping] * L if isinstance(damping, (int, float)) else list(damping)
    g_all = output_gradients(net, params, x, y)
    per_sample = []
    for b, h in enumerate(forward_all(net, params, x)):
        g = g_all[b]
        t = {}
        for i in range(1, L + 1):
            J = torch.func.jacrev(lambda hi: net.forward_from(params, i, hi))(h[i])  # (n_L, n_i)
            lam = lams[i - 1]
            if lam == 0:
                delta = torch.linalg.pinv(J) @ g
            else:
                eye = torch.eye(J.shape[0], dtype=J.dtype)
                delta = J.T @ torch.linalg.solve(J @ J.T + lam * eye, g)
            t[i] = h[i] - delta
        per_sample.append(t)
    return stack(per_sample)


def per_sample_loss_hessian(net, h_L, y_b):
    """∂²ℓ_b/∂h_L² of one sample's loss (cross-entropy after softmax, or the mean squared error over n_L) by
    autograd's Hessian: (n_L, n_L)."""
    if net.loss == "cross_entropy":
        loss = lambda h: F.cross_entropy(h.unsqueeze(0), y_b.reshape(1))  # noqa: E731
    else:
        loss = lambda h: F.mse_loss(h, y_b)  # noqa: E731
    return torch.autograd.functional.hessian(loss, h_L.detach())


def ggnt_targets(net, params, x, y, damping, hessian_damping=0.0):
    """{i: ĥ_i = h_i − Δ_i} with damped generalized Gauss–Newton displacements (paper Appendix D):
    Δ = (JᵀHJ + λI)⁻¹ Jᵀ g as an n_i × n_i solve (λ = 0: pinv(JᵀHJ) Jᵀ g), J^b by torch.func.jacrev, H^b by
    autograd's Hessian of sample b's own loss (with ``hessian_damping`` δ: H_δ = R², :func:`hessian_root`),
    g^b of the minibatch-mean loss."""
    L = net.L
    lams = [damping] * L if isinstance(damping, (int, float)) else list(damping)
    g_all = output_gradients(net, params, x, y)
    per_sample = []
    for b, h in enumerate(forward_all(net, params, x)):
        g, H = g_all[b], per_sample_loss_hessian(net, h[L], y[b])
        if hessian_damping:
            R = hessian_root(net, h[L], y[b], hessian_damping)[0]
            H = R @ R
        t = {}
        for i in range(1, L + 1):
            J = torch.func.jacrev(lambda hi: net.forward_from(params, i, hi))(h[i])  # (n_L, n_i)
            A = J.T @ H @ J
            if lams[i - 1] == 0:
                delta = torch.linalg.pinv(A, hermitian=True, rtol=1e-10) @ (J.T @ g)
            else:
                delta = torch.linalg.solve(A + lams[i - 1] * torch.eye(A.shape[0], dtype=A.dtype), J.T @ g)
            t[i] = h[i] - delta
        per_sample.append(t)
    return stack(per_sample)


# ------------------------------------------------------------------------------ forward-parameter update
def local_loss_gradients(net, params, x, targets):
    """Autograd of Σ_i ℒ_i^loc, ℒ_i^loc = (1/B) Σ_b ‖h_i^b − ĥ_i^b‖² with ĥ_i and h_{i−1} constants
    (docs/algorithms.md#the-local-layer-loss).  Each ℒ_i only reaches W_i, b_i, so one sum gives every layer's
    gradient."""
    B = x.shape[0]
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    total = 0.0
    for b, h in enumerate(forward_all(net, params, x)):
        for i, h_hat in targets.items():
            h_i = net.layer(leaves, i, h[i - 1].detach())
            total = total + ((h_i - h_hat[b].detach()) ** 2).sum() / B
    keys = [k for k in leaves if int(k[1:]) in targets]
    grads = torch.autograd.grad(total, [leaves[k] for k in keys])
    return dict(zip(keys, grads))


def bp_gradients(net, params, x, y):
    """∂ℒ/∂θ of the minibatch loss by autograd through the per-sample forward passes."""
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    outputs = torch.stack([hs[-1] for hs in forward_all(net, leaves, x)])
    grads = torch.autograd.grad(net.minibatch_loss(outputs, y), list(leaves.values()))
    return dict(zip(leaves, grads))


# --------------------------------------------------------------------------------- feedback losses
def feedback_gradients(form, net, params, fb, x, noise, sigma, fb_activation=None, y=None, hessian_damping=0.0):
    """Per block k: the feedback loss of docs/algorithms.md (a mean over B × width) and its gradient w.r.t. (Q_k, d_k)
    by autograd, every other tensor held constant.  Returns ``(grads, losses)``.

    * dtp     (docs/algorithms.md#dtp-and-dtp-pre-trained: c(σ)·mean(g_i(f_i(h̃_{i−1})) − h̃_{i−1})², c(σ) = 1/max(σ,
      0.02)²
    * dtpdrl  (docs/algorithms.md#dtpdrl: ỹ = F_{i−1→L}(h̃), z_L = ỹ, z_{k−1} = g_k(z_k) + h_{k−1} − g_k(h_k) (k =
      L…i+1),
                         r = g_i(z_i) + h_{i−1} − g_i(h_i), (1/σ²)·mean(r − h̃)²
    * DRL     (docs/algorithms.md#ddtp-linear, docs/algorithms.md#ddtp-rhl: ỹ = F_{i→L}(h̃_i), r = g_i(ỹ) + h_i −
      g_i(h_L), (1/σ²)·mean(r − h̃_i)²
                (DDTP-GGN, Appendix D eq. 193: ỹ and h_L read through R of sample b's clean output; needs ``y``)
    * control (docs/algorithms.md#ddtp-control: mean(g_i(ỹ) − h̃_i)²
    """
    psi = fb_activation or form.fb_activation
    L, B = net.L, x.shape[0]
    fixed = {k: v.detach() for k, v in fb.items()}
    hs = forward_all(net, params, x)
    blocks = range(2, L + 1) if form.family == "layerwise" else range(1, L)
    grads, losses = {}, {}
    for k in blocks:
        own = {n: fixed[n].clone().requires_grad_(True) for n in (f"Q{k}", f"d{k}") if n in fixed}
        fbk = {**fixed, **own}  # only block k's parameters are variables
        loss = 0.0
        for b, h in enumerate(hs):
            eps = noise[k][b]
            if form.family == "layerwise" and form.loss == "reconstruction":
                h_noisy = h[k - 1] + eps
                rec = layerwise_feedback_map(fbk, k, net.layer(params, k, h_noisy), psi)
                width = net.sizes[k - 1]
                loss = loss + ((rec - h_noisy) ** 2).sum() / max(sigma, DTP_SIGMA_FLOOR) ** 2 / (B * width)
            elif form.family == "layerwise" and form.loss == "drl":
                h_noisy = h[k - 1] + eps
                z = net.forward_from(params, k - 1, h_noisy)
                for j in range(L, k, -1):
                    z = layerwise_feedback_map(fbk, j, z, psi) + h[j - 1] - layerwise_feedback_map(fbk, j, h[j], psi)
                r = layerwise_feedback_map(fbk, k, z, psi) + h[k - 1] - layerwise_feedback_map(fbk, k, h[k], psi)
                width = net.sizes[k - 1]
                loss = loss + ((r - h_noisy) ** 2).sum() / sigma ** 2 / (B * width)
            else:
                h_noisy = h[k] + eps
                y_noisy, y_clean = net.forward_from(params, k, h_noisy), h[L]
                if form.output_space == "hessian-root":
                    R = hessian_root(net, h[L], y[b], hessian_damping)[0]
                    y_noisy, y_clean = R @ y_noisy, R @ y_clean
                g = lambda z: direct_feedback_map(form, fbk, L, k, z, h[k], psi)  # noqa: E731
                width = net.sizes[k]
                if form.loss == "control":
                    loss = loss + ((g(y_noisy) - h_noisy) ** 2).sum() / (B * width)
                elif form.loss == "drl":
                    r = g(y_noisy) + h[k] - g(y_clean)
                    loss = loss + ((r - h_noisy) ** 2).sum() / sigma ** 2 / (B * width)
                else:
                    raise ValueError(f"a direct rule with feedback loss {form.loss!r} has no reference loss")
        block_grads = torch.autograd.grad(loss, list(own.values()))
        grads.update(zip(own, block_grads))
        losses[k] = loss.detach()
    return grads, losses
