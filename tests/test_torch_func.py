"""torch.func transforms on pyireg.torch.PackedMLP through functional_call: grad, jacrev, vmap,
per-sample gradients, Hessian-vector products and Hessians, each against the same computation
in plain PyTorch (one network at a time, as pyireg.reference writes them), in float64."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, jacrev, vjp, vmap

import pyireg
import pyireg.torch as pt

LAYOUTS = [([1, 3, 2, 5], 5, 3), ([1], 3, 1), ([2, 7, 1], 4, 13)]     # width 1, one network, k > 12, odd d


@pytest.fixture(autouse=True)
def _one_native_thread():
    pyireg.set_num_threads(1)


def plain_outputs(U, V, X, offsets, activation="relu"):
    act = torch.relu if activation == "relu" else (lambda z: z)
    return torch.stack([act(X @ U[a:b].T) @ V[a:b] for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())])


def plain_losses(U, V, X, y, offsets, activation="relu", loss="cross_entropy", weights=None):
    out = plain_outputs(U, V, X, offsets, activation)
    if loss == "cross_entropy":
        return torch.stack([F.cross_entropy(o, y) for o in out])
    r = (out - y) ** 2
    if weights is not None:
        r = r * weights
    return 0.5 * r.sum(2).mean(1)


class Losses(nn.Module):
    """PackedMLP.losses as a module's forward, so that functional_call reaches it."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, X, y, weights=None):
        return self.m.losses(X, y, weights)


def _model(widths, d, k, activation="relu", loss="cross_entropy", B=6, seed=0):
    m = pt.PackedMLP(widths, d, k, activation=activation, loss=loss, seed=seed, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed + 1)
    X = torch.randn(B, d, dtype=torch.float64, generator=g)
    y = torch.randint(0, k, (B,), generator=g) if loss == "cross_entropy" else torch.randn(B, k, dtype=torch.float64,
                                                                                         generator=g)
    params = {"U": m.U.detach().clone(), "V": m.V.detach().clone()}
    return m, X, y, params


def _close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("widths, d, k", LAYOUTS)
@pytest.mark.parametrize("activation", ["relu", "linear"])
def test_grad_of_outputs_equals_plain_torch_and_autograd(widths, d, k, activation):
    m, X, _, params = _model(widths, d, k, activation)
    G = torch.randn(len(widths), X.shape[0], k, dtype=torch.float64, generator=torch.Generator().manual_seed(3))

    def f(p, X):
        return (functional_call(m, p, (X,)) * G).sum()

    def f_plain(p, X):
        return (plain_outputs(p["U"], p["V"], X, m.offsets, activation) * G).sum()

    ours = grad(f, argnums=(0, 1))(params, X)
    plain = grad(f_plain, argnums=(0, 1))(params, X)
    _close(ours[0]["U"], plain[0]["U"])
    _close(ours[0]["V"], plain[0]["V"])
    _close(ours[1], plain[1])
    # and plain autograd on the module itself
    m.zero_grad()
    Xr = X.clone().requires_grad_(True)
    (m(Xr) * G).sum().backward()
    _close(ours[0]["U"], m.U.grad)
    _close(ours[0]["V"], m.V.grad)
    _close(ours[1], Xr.grad)


@pytest.mark.parametrize("loss", ["cross_entropy", "squared"])
@pytest.mark.parametrize("widths, d, k", LAYOUTS[:2])
def test_grad_of_losses_equals_plain_torch(widths, d, k, loss):
    m, X, y, params = _model(widths, d, k, loss=loss)
    w = None if loss == "cross_entropy" else torch.rand(y.shape, dtype=torch.float64,
                                                        generator=torch.Generator().manual_seed(4))
    scale = torch.linspace(0.5, 2.0, len(widths), dtype=torch.float64)
    wrapped = Losses(m)

    def f(p, X):
        return (functional_call(wrapped, {"m." + n: t for n, t in p.items()}, (X, y, w)) * scale).sum()

    def f_plain(p, X):
        return (plain_losses(p["U"], p["V"], X, y, m.offsets, loss=loss, weights=w) * scale).sum()

    ours = grad(f, argnums=(0, 1))(params, X)
    plain = grad(f_plain, argnums=(0, 1))(params, X)
    for n in ("U", "V"):
        _close(ours[0][n], plain[0][n])
    _close(ours[1], plain[1])


def test_jacrev_of_outputs_equals_plain_torch():
    m, X, _, params = _model(*LAYOUTS[0], B=3)
    ours = jacrev(lambda p: functional_call(m, p, (X,)))(params)
    plain = jacrev(lambda p: plain_outputs(p["U"], p["V"], X, m.offsets))(params)
    assert ours["U"].shape == (4, 3, 3) + tuple(params["U"].shape)
    _close(ours["U"], plain["U"])
    _close(ours["V"], plain["V"])
    jx = jacrev(lambda X: functional_call(m, params, (X,)))(X)
    _close(jx, jacrev(lambda X: plain_outputs(params["U"], params["V"], X, m.offsets))(X))


def test_vmap_over_batches_and_over_parameter_sets():
    """vmap runs the operator once per entry (the loop rule): the same numbers as one call."""
    m, X, _, params = _model(*LAYOUTS[0], B=6)
    Xs = X.view(3, 2, -1)
    out = vmap(lambda x: functional_call(m, params, (x,)))(Xs)
    assert out.shape == (3, 4, 2, 3)
    _close(out, torch.stack([plain_outputs(params["U"], params["V"], x, m.offsets) for x in Xs]))
    # an ensemble of parameter sets, stacked
    sets = {n: torch.stack([t, 2 * t, -t]) for n, t in params.items()}
    out = vmap(lambda p: functional_call(m, p, (X,)))(sets)
    _close(out, torch.stack([plain_outputs(sets["U"][i], sets["V"][i], X, m.offsets) for i in range(3)]))


def test_per_sample_gradients_vmap_of_grad():
    m, X, y, params = _model(*LAYOUTS[0], B=5)
    wrapped = Losses(m)

    def one(p, x, t):
        return functional_call(wrapped, {"m." + n: v for n, v in p.items()}, (x[None], t[None])).sum()

    ours = vmap(grad(one), in_dims=(None, 0, 0))(params, X, y)
    for i in range(X.shape[0]):
        plain = grad(lambda p: plain_losses(p["U"], p["V"], X[i:i + 1], y[i:i + 1], m.offsets).sum())(params)
        _close(ours["U"][i], plain["U"])
        _close(ours["V"][i], plain["V"])


@pytest.mark.parametrize("loss", ["cross_entropy", "squared"])
def test_hessian_vector_products_and_hessian_equal_plain_torch(loss):
    """Reverse over reverse: grad of <grad, v> (an HVP), and jacrev(jacrev) (a whole Hessian)."""
    m, X, y, params = _model(*LAYOUTS[0], loss=loss, B=4)
    wrapped = Losses(m)
    v = {n: torch.randn(t.shape, dtype=t.dtype, generator=torch.Generator().manual_seed(9)) for n, t in params.items()}

    def f(p):
        return functional_call(wrapped, {"m." + n: t for n, t in p.items()}, (X, y)).sum()

    def f_plain(p):
        return plain_losses(p["U"], p["V"], X, y, m.offsets, loss=loss).sum()

    def hvp(fn):
        return grad(lambda p: sum((grad(fn)(p)[n] * v[n]).sum() for n in p))(params)

    ours, plain = hvp(f), hvp(f_plain)
    for n in ("U", "V"):
        _close(ours[n], plain[n])
    H = jacrev(jacrev(f))(params)
    Hp = jacrev(jacrev(f_plain))(params)
    for a in ("U", "V"):
        for b in ("U", "V"):
            _close(H[a][b], Hp[a][b])
    # the same HVP through autograd on the module (eager path, create_graph=True)
    gU, gV = torch.autograd.grad(m.losses(X, y).sum(), (m.U, m.V), create_graph=True)
    hU, hV = torch.autograd.grad((gU * v["U"]).sum() + (gV * v["V"]).sum(), (m.U, m.V))
    _close(hU, plain["U"])
    _close(hV, plain["V"])


def test_vjp_then_vjp_again():
    m, X, _, params = _model(*LAYOUTS[2], B=3)
    out, pull = vjp(lambda p: functional_call(m, p, (X,)), params)
    G = torch.ones_like(out)
    (g,) = pull(G)
    _, pull_plain = vjp(lambda p: plain_outputs(p["U"], p["V"], X, m.offsets), params)
    (gp,) = pull_plain(G)
    _close(g["U"], gp["U"])
    _close(g["V"], gp["V"])


# torch.func.jvp imports modules that use torch.jit.script, which warns
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_forward_mode_is_refused_naming_reverse_mode():
    m, X, _, params = _model(*LAYOUTS[0])
    with pytest.raises(RuntimeError, match=r"forward-mode differentiation .* use reverse mode: "
                                           r"torch.func.jacrev\(torch.func.jacrev\(f\)\)"):
        torch.func.jvp(lambda U: functional_call(m, {"U": U, "V": params["V"]}, (X,)), (params["U"],),
                       (torch.ones_like(params["U"]),))


def test_in_place_operators_refuse_vmap():
    m, X, y, params = _model(*LAYOUTS[0])
    opt = pt.PackedSGD(m, lr=0.1)
    with pytest.raises(RuntimeError, match="pyireg::packed_step: torch.func.vmap is not supported"):
        vmap(lambda x: m.train_step(x, y, opt))(X.expand(2, -1, -1))
