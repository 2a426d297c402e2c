"""Thesis conditions C1-C3 and the margin bounds against small computations done here."""
import math

import numpy as np
import pytest

from pyireg import PackedMLP
from pyireg import thesis_measures as TM


def _net(seed=0, dims=(4, 6, 3)):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((dims[i + 1], dims[i])) for i in range(len(dims) - 1)], rng


def test_c1_two_layers_by_hand():
    (U, V), rng = _net()
    X = rng.standard_normal((5, 4))
    r = TM.c1([U, V], X)
    want = []
    for x in X:
        D = np.diag((U @ x > 0).astype(float))
        want.append(np.linalg.norm(V, 2) * np.linalg.norm(U, 2) / np.linalg.norm(V @ D @ U, 2))
    assert r["inv_mu"] == pytest.approx(max(want), rel=1e-12)
    np.testing.assert_allclose(np.sort(r["ratios"]), np.sort(want), rtol=1e-12)


def test_c1_three_layers_all_ratios_at_least_one():
    Ws, rng = _net(1, (5, 7, 6, 4))
    x = rng.standard_normal(5)
    ratios = TM.condition_ratios(Ws, x)
    assert set(ratios) == {(1, 1, 2), (1, 1, 3), (1, 2, 3), (2, 2, 3)}
    assert all(r >= 1 - 1e-12 for r in ratios.values())
    D1 = np.diag((Ws[0] @ x > 0).astype(float))
    D2 = np.diag((Ws[1] @ D1 @ Ws[0] @ x > 0).astype(float))
    J13 = Ws[2] @ D2 @ Ws[1] @ D1 @ Ws[0]
    want = np.linalg.norm(Ws[2] @ D2 @ Ws[1], 2) * np.linalg.norm(Ws[0], 2) / np.linalg.norm(J13, 2)
    assert ratios[1, 1, 3] == pytest.approx(want, rel=1e-12)


def test_c2_flip_ratio():
    Ws, rng = _net(2, (4, 50, 3))
    X = rng.standard_normal((200, 4))
    r = TM.c2(Ws, X, [0.0, 3e-2, 1e6], draws=3)
    assert r[0] == 0.0
    assert 0 < r[1] < 0.1
    assert 0.35 < r[2] < 0.65            # a perturbation that swamps W: a coin flip per activation


def test_c3_by_hand():
    W1 = np.array([[3.0, 4.0], [0.0, 1.0], [1.0, 0.0]])      # norms 5, 1, 1: mean 7/3
    W2 = np.ones((2, 3))
    (r,) = TM.c3([W1, W2])
    np.testing.assert_allclose(r, np.array([5, 1, 1]) * 3 / 7)


def test_margin_pac_bayes_terms():
    Ws, rng = _net(3)
    X = rng.standard_normal((30, 4))
    y = rng.integers(0, 3, 30)
    prior = [W * 0.5 for W in Ws]
    out = TM.margin_pac_bayes(Ws, X, y, gamma=0.5, sigma=1e-4, delta=0.05, prior=prior)
    f = np.maximum(X @ Ws[0].T, 0) @ Ws[1].T
    marg = np.array([f[i, y[i]] - np.max(np.delete(f[i], y[i])) for i in range(30)])
    kl = sum(((0.5 * W) ** 2).sum() for W in Ws) / (2 * 1e-4 ** 2)
    assert out["margin_loss"] == pytest.approx((marg <= 0.5).mean())
    assert out["kl"] == pytest.approx(kl, rel=1e-12)
    assert out["bound"] == pytest.approx((marg <= 0.5).mean() + 4 * math.sqrt((kl + math.log(6 * 30 / 0.05)) / 29))
    assert out["condition_prob"] == 1.0          # sigma tiny: the outputs barely move
    assert TM.margin_pac_bayes(Ws, X, y, gamma=0.5, sigma=10.0)["condition_prob"] == 0.0


def test_spectral_bound_terms_and_rescaling_invariance():
    Ws, rng = _net(4)
    X = rng.standard_normal((50, 4))
    y = rng.integers(0, 3, 50)
    out = TM.spectral_bound(Ws, X, y, gamma=1.0)
    s = [np.linalg.svd(W, compute_uv=False)[0] for W in Ws]
    prod2 = (s[0] * s[1]) ** 2
    ratio = sum((W ** 2).sum() / si ** 2 for W, si in zip(Ws, s))
    B = np.linalg.norm(X, axis=1).max()
    kl = 42 ** 2 * 4 * B ** 2 * 6 * math.log(48) * prod2 * ratio / 2
    assert out["kl"] == pytest.approx(kl, rel=1e-10)
    assert out["width"] == 6 and out["depth"] == 2
    resc = TM.spectral_bound([Ws[0] * 3.0, Ws[1] / 3.0], X, y, gamma=1.0)
    assert resc["bound"] == pytest.approx(out["bound"], rel=1e-10)


def test_packed_weights():
    m = PackedMLP([2, 3], 4, 5, seed=0)
    U, Vt = TM.packed_weights(m, 1)
    X = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32)
    np.testing.assert_allclose(TM.forward([U, Vt], X), m.forward(X)[1], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="layer 1"):
        TM.c3([np.ones((3, 2)), np.ones((2, 2))])


def test_bad_inputs_are_refused_with_the_argument_named():
    """The bounds' inputs are checked: a prior of other layers (zip used to drop the missing
    ones, numpy to broadcast a wrong shape: a wrong KL), labels outside [0, k) (-1 indexed the
    last class), gamma, sigma, delta and draws out of range, X of the wrong width or not finite."""
    rng = np.random.default_rng(0)
    Ws = [rng.standard_normal((5, 3)), rng.standard_normal((4, 5)), rng.standard_normal((2, 4))]
    X, y = rng.standard_normal((10, 3)), rng.integers(0, 2, 10)
    full = TM.margin_pac_bayes(Ws, X, y, 1.0, 0.1, prior=[np.zeros_like(W) for W in Ws])["kl"]
    assert full == pytest.approx(sum((W ** 2).sum() for W in Ws) / (2 * 0.1 ** 2), rel=1e-12)
    for prior in ([np.zeros((5, 3))], [np.ones((1, 1))] * 3):
        with pytest.raises(ValueError, match=r"prior: expected layers shaped like the weights"):
            TM.margin_pac_bayes(Ws, X, y, 1.0, 0.1, prior=prior)
    bad_y = np.where(np.arange(10) == 2, -1, y)
    for call in (lambda: TM.margins(Ws, X, bad_y), lambda: TM.margin_pac_bayes(Ws, X, bad_y, 1.0, 0.1),
                 lambda: TM.spectral_bound(Ws, X, bad_y, 1.0)):
        with pytest.raises(ValueError, match=r"y: expected labels in \[0, 2\), got -1 at index 2"):
            call()
    for gamma, m in ((0.0, 10), (-1.0, 10), (float("inf"), 10), (1.0, 1)):
        with pytest.raises(ValueError, match="X, gamma, delta: expected m >= 2 samples"):
            TM.spectral_bound(Ws, X[:m], y[:m], gamma)
    with pytest.raises(ValueError, match="sigma: expected a finite scale > 0"):
        TM.margin_pac_bayes(Ws, X, y, 1.0, 0.0)
    for call in (lambda: TM.c2(Ws, X, [0.1], draws=0), lambda: TM.margin_pac_bayes(Ws, X, y, 1.0, 0.1, draws=0)):
        with pytest.raises(ValueError, match="draws: expected a positive integer, got 0"):
            call()
    with pytest.raises(ValueError, match=r"X: expected a 2-d batch \(m, 3\) for the first layer, got shape \(10, 4\)"):
        TM.margins(Ws, rng.standard_normal((10, 4)), y)
    X[3, 1] = np.nan
    with pytest.raises(ValueError, match="X: contains NaN or inf"):
        TM.c2(Ws, X, [0.1])
