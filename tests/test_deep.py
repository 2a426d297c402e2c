"""pyireg.deep: path norms against explicit path enumeration, Path-SGD's scaling against
autograd's Hessian diagonal, the invariance of Path-SGD's trajectory to rescaling hidden units,
deep linear networks, and C1-C3 on a 10-layer perceptron."""
import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from pyireg.deep import (
    DeepLinear,
    PathSGD,
    conditions_report,
    path_norm,
    path_scaling,
    perceptron,
    rescale_hidden,
)


def _weights(dims, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(dims[i + 1], dims[i], generator=g, dtype=torch.float64) for i in range(len(dims) - 1)]


@pytest.mark.parametrize("p", [1.0, 2.0, 3.5, math.inf])
def test_path_norm_by_enumeration(p):
    Ws = _weights([3, 4, 2, 3])
    prods = []
    for path in itertools.product(range(3), range(4), range(2), range(3)):
        prods.append(abs(float(Ws[0][path[1], path[0]] * Ws[1][path[2], path[1]] * Ws[2][path[3], path[2]])))
    prods = np.array(prods)
    want = prods.max() if p == math.inf else (prods ** p).sum() ** (1 / p)
    assert path_norm(Ws, p) == pytest.approx(want, rel=1e-12)


def test_path_norm_of_a_large_p_stays_finite_where_it_is():
    """|w|^p over- or underflows float64 for large p: the layers are scaled first. One path:
    phi_p is the product of its weights' magnitudes, whatever p."""
    assert path_norm([np.array([[100.0]]), np.array([[0.001]])], p=300) == pytest.approx(0.1, rel=1e-12)
    assert path_norm([np.array([[1e-3]]), np.array([[1e-3]])], p=400) == pytest.approx(1e-6, rel=1e-12)
    two = [np.array([[10.0, 10.0]]).T, np.array([[10.0, 10.0]])]            # 2 paths of product 100
    assert path_norm(two, p=200) == pytest.approx(100 * 2 ** (1 / 200), rel=1e-12)
    assert path_norm([np.array([[1e200]]), np.array([[1e200]])], p=3) == math.inf
    assert path_norm([np.zeros((2, 2)), np.ones((1, 2))], p=300) == 0.0
    # an ordinary p keeps the direct dynamic program's bits (the scaling only where it overflows)
    Ws = _weights([3, 4, 2], 5)
    for p in (1.5, 2.0, 3.0):
        g = torch.ones(3, dtype=torch.float64)
        for W in Ws:
            g = W.abs().pow(p) @ g
        assert path_norm(Ws, p) == float(g.sum() ** (1 / p))


def test_path_scaling_is_half_the_hessian_diagonal():
    dims = [3, 4, 3, 2]
    Ws = _weights(dims, 1)
    sizes = [W.numel() for W in Ws]

    def phi2sq(flat):
        parts = torch.split(flat, sizes)
        g = torch.ones(dims[0], dtype=torch.float64)
        for part, W in zip(parts, Ws):
            g = part.reshape(W.shape) ** 2 @ g
        return g.sum()

    flat = torch.cat([W.reshape(-1) for W in Ws])
    H = torch.autograd.functional.hessian(phi2sq, flat)
    want = 0.5 * torch.diagonal(H)
    got = torch.cat([k.reshape(-1) for k in path_scaling(Ws)])
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def _data(n=16, d=5, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.randint(0, k, (n,), generator=g)


def _train(model, opt, X, y, steps):
    outs = []
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(X), y).backward()
        opt.step()
        outs.append(model(X).detach().clone())
    return outs


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_path_sgd_trajectory_invariant_to_rescaling(momentum):
    X, y = _data()
    a = perceptron(5, 6, 4, 3, seed=3)
    b = perceptron(5, 6, 4, 3, seed=3)
    g = torch.Generator().manual_seed(9)
    scales = [torch.exp(2 * torch.randn(6, generator=g, dtype=torch.float64)) for _ in range(3)]
    rescale_hidden(b, scales)
    torch.testing.assert_close(a(X), b(X), rtol=1e-12, atol=1e-12)
    oa, ob = PathSGD(a, lr=0.05, momentum=momentum), PathSGD(b, lr=0.05, momentum=momentum)
    for fa, fb in zip(_train(a, oa, X, y, 25), _train(b, ob, X, y, 25)):
        torch.testing.assert_close(fa, fb, rtol=1e-12, atol=1e-12)
    # and SGD is not invariant (the control)
    c, e = perceptron(5, 6, 4, 3, seed=3), perceptron(5, 6, 4, 3, seed=3)
    rescale_hidden(e, scales)
    sc = _train(c, torch.optim.SGD(c.parameters(), lr=0.05), X, y, 5)[-1]
    se = _train(e, torch.optim.SGD(e.parameters(), lr=0.05), X, y, 5)[-1]
    assert (sc - se).abs().max() > 1e-3


def test_perceptron_seeds_its_own_generator_and_checks_its_sizes():
    """The same seed gives the same weights as before (torch.manual_seed's stream), without
    resetting the caller's global torch stream."""
    torch.manual_seed(123)
    want = torch.rand(3)
    torch.manual_seed(123)
    a = perceptron(5, 6, 4, 3, seed=3)
    assert torch.equal(torch.rand(3), want)                  # the global stream went on untouched
    torch.manual_seed(3)                                     # as the seeding was done before
    lin = nn.Linear(5, 6, bias=False, dtype=torch.float64)
    nn.init.normal_(lin.weight, std=(2.0 / 5) ** 0.5)
    assert torch.equal(a[0].weight, lin.weight)
    for args, match in (((0, 6, 4, 3), "in_features: expected a positive integer, got 0"),
                        ((5, 2.5, 4, 3), "width: expected a positive integer, got 2.5"),
                        ((5, 6, 1, 3), "depth: expected at least 2 layers, got 1")):
        with pytest.raises(ValueError, match=match):
            perceptron(*args)


def test_path_sgd_two_layers_matches_the_packed_rule():
    # for two layers kappa_U(h) = ||v_h||^2 and kappa_V(h) = ||u_h||^2 (pyireg.optim.PathSGD's rule)
    U, Vt = _weights([5, 4, 3], 2)
    kU, kV = path_scaling([U, Vt])
    torch.testing.assert_close(kU, (Vt ** 2).sum(0)[:, None].expand_as(U), rtol=1e-14, atol=0)
    torch.testing.assert_close(kV, (U ** 2).sum(1)[None, :].expand_as(Vt), rtol=1e-14, atol=0)


def test_path_sgd_bad_models():
    with pytest.raises(ValueError, match="bias"):
        PathSGD(nn.Sequential(nn.Linear(2, 2)), lr=0.1)
    with pytest.raises(TypeError, match="Tanh"):
        PathSGD(nn.Sequential(nn.Linear(2, 2, bias=False), nn.Tanh()), lr=0.1)
    with pytest.raises(ValueError, match="lr"):
        PathSGD(nn.Sequential(nn.Linear(2, 2, bias=False)), lr=0.0)
    with pytest.raises(ValueError, match="layer 1"):
        path_norm([np.ones((3, 2)), np.ones((2, 2))])


def test_deep_linear():
    m = DeepLinear([4, 5, 5, 3], init_scale=0.3, seed=1)
    X = torch.randn(7, 4, dtype=torch.float64)
    torch.testing.assert_close(m(X), X @ m.product().T)
    rng = np.random.default_rng(0)
    target = rng.standard_normal((3, 1)) @ rng.standard_normal((1, 4))       # rank one
    mask = (rng.random((3, 4)) < 0.8).astype(float)
    losses = m.fit_entries(target, mask, lr=0.2, steps=300)
    assert losses[-1] < 1e-2 * losses[0]


def test_conditions_on_a_10_layer_perceptron():
    # Figure 3's check at width 32: C1 >= 1 by construction (finite), flips grow with the
    # perturbation and vanish without it, C3 near 1 at initialization
    model = perceptron(20, 32, 10, 10, seed=0)
    X = torch.randn(64, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).numpy()
    r = conditions_report(model, X, magnitudes=(0.0, 1e-3, 1e-2, 1e-1), samples=4)
    assert 1.0 <= r["inv_mu"] < math.inf
    flips = list(r["flip_ratio"].values())
    assert flips[0] == 0.0 and flips[1] < flips[2] < flips[3] < 0.5
    assert 0.3 < r["c3_min"] <= 1.0 <= r["c3_max"] < 2.0


@pytest.mark.parametrize("make, match", [
    (lambda: DeepLinear([3, 3], init_scale=-1), "init_scale: expected a finite number > 0"),
    (lambda: DeepLinear([3, 3], init_scale=float("nan")), "init_scale: expected a finite number > 0"),
    (lambda: DeepLinear([3, 3], seed=-1), "seed: expected a non-negative integer"),
    (lambda: DeepLinear([3, 3]).fit_entries(torch.eye(3), torch.ones(3, 3), lr=float("nan")),
     "lr: expected a finite number > 0"),
    (lambda: DeepLinear([3, 3]).fit_entries(torch.eye(3), torch.ones(3, 3), lr=-1), "lr: expected a finite"),
    (lambda: DeepLinear([3, 3]).fit_entries(torch.eye(3), torch.ones(3, 3), steps=-3), "steps: expected a positive"),
    (lambda: DeepLinear([3, 3]).fit_entries(torch.full((3, 3), float("inf")), torch.ones(3, 3)), "target: expected"),
    (lambda: DeepLinear([3, 3]).fit_entries(torch.eye(3), -torch.ones(3, 3)), "mask: expected non-negative"),
])
def test_deep_linear_checks_its_arguments(make, match):
    """init_scale -1 or NaN, lr NaN (NaN losses) and steps -3 (an empty list) were accepted."""
    with pytest.raises(ValueError, match=match):
        make()
