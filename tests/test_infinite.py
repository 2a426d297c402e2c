"""Section 4 for one output: losses and their duals, Theorem 1 for the squared and logistic losses,
the exact ReLU-unit oracle against fine finite libraries, support reduction, the convex net over
the unit ball and both directions of Corollary 1."""
import numpy as np
import pytest

from pyireg import infinite as I


def _problem(n, d, loss, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = np.sign(rng.standard_normal(n)) if loss == "logistic" else rng.standard_normal(n)
    return X, y


def _sphere(m, d, seed):
    L = np.random.default_rng(seed).standard_normal((m, d))
    return L / np.linalg.norm(L, axis=1, keepdims=True)


@pytest.mark.parametrize("loss", I.LOSSES)
def test_loss_gradient_and_dual(loss):
    _, y = _problem(9, 3, loss, 0)
    f = np.random.default_rng(1).standard_normal(9)
    eps = 1e-6
    num = np.array([(I.loss_value(f + eps * e, y, loss) - I.loss_value(f - eps * e, y, loss)) / (2 * eps)
                    for e in np.eye(9)])
    np.testing.assert_allclose(I.loss_grad(f, y, loss), num, rtol=1e-6, atol=1e-10)
    # Fenchel-Young: at alpha = -grad the dual term equals loss - <grad, f>... i.e. equality
    g = I.loss_grad(f, y, loss)
    assert I.dual_value(f, y, loss, 1.0) == pytest.approx(I.loss_value(f, y, loss) - g @ f, rel=1e-12)
    # and any scale gives a value below loss(f') - <grad_s, f'> for other f' (weak duality piece)
    f2 = f + 1.0
    assert I.dual_value(f, y, loss, 0.7) <= I.loss_value(f2, y, loss) - 0.7 * g @ f2 + 1e-12


@pytest.mark.parametrize("loss", I.LOSSES)
def test_theorem1_maps(loss):
    rng = np.random.default_rng(2)
    X, y = _problem(15, 4, loss, 3)
    U, v = rng.standard_normal((6, 4)) * 2, rng.standard_normal(6)
    U[2] = 0                                   # a dead unit
    lam = 0.03
    o4 = I.objective4(U, v, X, y, lam, loss)
    Un, vn = I.to_unit_norm(U, v)
    np.testing.assert_allclose(I.network_output(Un, vn, X), I.network_output(U, v, X), rtol=1e-12, atol=1e-12)
    assert I.objective5(Un, vn, X, y, lam, loss) <= o4 + 1e-12
    Ub, vb = I.balance(U, v)
    np.testing.assert_allclose(I.network_output(Ub, vb, X), I.network_output(U, v, X), rtol=1e-12, atol=1e-12)
    assert I.objective4(Ub, vb, X, y, lam, loss) == pytest.approx(I.objective5(Un, vn, X, y, lam, loss), rel=1e-12)
    assert I.objective5(U * 3, v, X, y, lam, loss) == np.inf


@pytest.mark.parametrize("loss", I.LOSSES)
def test_theorem1_local_solutions_correspond(loss):
    # a local minimum of (4) maps to a point of (5) with the same
    # value that (5)'s own solver cannot improve; a local minimum of (5), balanced, is a point of
    # (4) with the same value that (4)'s solver cannot improve; both stay above the certified
    # lower bound of the convex net over the ball (Corollary 1's inequality)
    X, y = _problem(8, 2, loss, 4)
    lam = 0.05
    D = I.convex_ball(X, y, lam, loss).lower_bound
    U4, v4, o4 = I.train4(X, y, 6, lam, loss, seed=1)
    Un, vn = I.to_unit_norm(U4, v4)
    assert I.objective5(Un, vn, X, y, lam, loss) <= o4 + 1e-12
    o5 = I.train5(X, y, 6, lam, loss, init=(Un, vn))[2]
    assert o5 <= o4 + 1e-12 and o5 >= o4 * (1 - 1e-3)
    U5, v5, o5 = I.train5(X, y, 6, lam, loss, seed=2)
    Ub, vb = I.balance(U5, v5)
    assert I.objective4(Ub, vb, X, y, lam, loss) == pytest.approx(o5, rel=1e-12)
    o4b = I.train4(X, y, 6, lam, loss, init=(Ub, vb))[2]
    assert o4b <= o5 * (1 + 1e-12) and o4b >= o5 * (1 - 1e-3)
    assert min(o4, o5) >= D - 1e-12


@pytest.mark.parametrize("d", [2, 3])
def test_exact_oracle_against_fine_library(d):
    rng = np.random.default_rng(d)
    for trial in range(3):
        X = rng.standard_normal((11, d))
        g = rng.standard_normal(11)
        u, val, method = I.relu_oracle(X, g, method="exact")
        assert method == "exact"
        assert np.linalg.norm(u) == pytest.approx(1.0)
        assert val == pytest.approx(abs(np.maximum(X @ u, 0) @ g), rel=1e-12)
        if d == 2:
            a = np.linspace(0, 2 * np.pi, 400000, endpoint=False)
            L = np.column_stack([np.cos(a), np.sin(a)])
        else:
            L = _sphere(200000, d, trial)
        lib = np.abs(np.maximum(L @ X.T, 0) @ g).max()
        assert val >= lib - 1e-12                      # never below any library unit
        assert val <= lib * (1 + (2e-3 if d == 3 else 1e-4))
        _, ms, _ = I.relu_oracle(X, g, method="multistart")
        assert ms <= val + 1e-12 and ms >= 0.9 * val


def test_oracle_degenerate_data():
    X = np.array([[1.0, 2.0, 0.0], [2.0, 4.0, 0.0], [0.0, 0.0, 0.0]])   # rank 1, a zero row
    g = np.array([1.0, 1.0, 5.0])
    u, val, _ = I.relu_oracle(X, g)
    assert val == pytest.approx(3 * np.sqrt(5))      # the zero row contributes relu(0) = 0
    assert np.allclose(u, np.array([1, 2, 0]) / np.sqrt(5))


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_support_reduction(k, seed):
    rng = np.random.default_rng(seed)
    n, d, m = 7, 3, 60
    X = rng.standard_normal((n, d))
    A = np.maximum(X @ _sphere(m, d, seed).T, 0)
    V = rng.standard_normal((m, k)) if k > 1 else rng.standard_normal(m)
    V[::5] = 0
    R = I.support_reduction(A, V)
    rows = np.sqrt((R.reshape(m, -1) ** 2).sum(1))
    assert (rows > 0).sum() <= n * k + 1
    np.testing.assert_allclose(A @ R, A @ V, atol=1e-9 * np.abs(A @ V).max())
    assert rows.sum() == pytest.approx(np.sqrt((V.reshape(m, -1) ** 2).sum(1)).sum(), rel=1e-10)
    # each new row is a nonnegative multiple of the old one
    Vm, Rm = V.reshape(m, -1), R.reshape(m, -1)
    cos = (Vm * Rm).sum(1)
    assert np.all(cos >= -1e-12)
    for loss in I.LOSSES[:1]:
        y = rng.standard_normal(n)
        if k == 1:
            before = I.loss_value(A @ V, y, loss) + 0.1 * np.abs(V).sum()
            after = I.loss_value(A @ R, y, loss) + 0.1 * np.abs(R).sum()
            assert after == pytest.approx(before, rel=1e-10)


@pytest.mark.parametrize("loss", I.LOSSES)
def test_convex_ball_against_fine_library(loss):
    X, y = _problem(10, 2, loss, 5)
    lam = 0.04
    sol = I.convex_ball(X, y, lam, loss)
    assert sol.objective - sol.lower_bound <= 1e-5 * abs(sol.objective)
    assert sol.oracle_value <= lam * (1 + 1e-5)
    W = _sphere(3000, 2, 0)
    v = I._lasso(np.maximum(X @ W.T, 0), y, lam, loss, np.zeros(3000))
    lib = I.loss_value(np.maximum(X @ W.T, 0) @ v, y, loss) + lam * np.abs(v).sum()
    assert lib >= sol.lower_bound - 1e-12                     # a library is a subset of the ball
    assert lib <= sol.objective * (1 + 1e-3)                  # ... and a fine one gets close


def test_corollary1_both_directions():
    X, y = _problem(10, 3, "squared", 0)
    lam = 0.05
    rows = I.corollary1_table(X, y, lam, "squared", [1, 12], restarts=2)
    P, D, s = rows[0]["convex_P"], rows[0]["convex_D"], rows[0]["support"]
    assert s <= len(y) + 1
    assert P - D <= 1e-5 * P
    for r in rows:
        assert r["trained"] >= D - 1e-12                      # no network beats the convex optimum
    assert rows[0]["built"] is None and rows[0]["trained"] > P * (1 + 1e-3)   # H = 1 < s: above
    assert rows[1]["built"] == pytest.approx(P, rel=1e-10)                     # H >= s: attains it


def test_bad_input():
    X, y = _problem(5, 2, "squared", 0)
    with pytest.raises(ValueError, match="loss"):
        I.convex_ball(X, y, 0.1, "hinge")
    with pytest.raises(ValueError, match="labels in"):
        I.convex_ball(X, y, 0.1, "logistic")
    with pytest.raises(ValueError, match="lam"):
        I.convex_ball(X, np.sign(y), 0.0, "logistic")
    with pytest.raises(ValueError, match="method"):
        I.relu_oracle(X, y, method="magic")
    with pytest.raises(ValueError, match="V"):
        I.support_reduction(np.ones((3, 4)), np.ones(5))
    # finite data whose squares overflow float64: refused, where the line searches halved forever
    for scaled in ((X * 1e160, y, "X"), (X, y * 1e101, "y")):
        for solve in (lambda X, y: I.train5(X, y, 3, 0.1, "squared", iters=5),
                      lambda X, y: I.convex_ball(X, y, 0.1, "squared")):
            with pytest.raises(ValueError, match=rf"{scaled[2]}: values up to .* whose squares overflow float64"):
                solve(*scaled[:2])
    for train in (I.train4, I.train5):
        with pytest.raises(ValueError, match="lam: expected a finite number >= 0, got -0.1"):
            train(X, y, 3, -0.1, "squared")
        with pytest.raises(ValueError, match="H: expected a positive integer, got 0"):
            train(X, y, 0, 0.1, "squared")
    bad = X.copy()
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match="X, g: expected finite values"):
        I.relu_oracle(bad, y)


@pytest.mark.parametrize("kw, match", [(dict(restarts=0), "restarts: expected a positive integer"),
                                       (dict(widths=[4, 0]), "widths: expected a positive integer"),
                                       (dict(widths=[]), "widths: expected at least one width"),
                                       (dict(iters=-1), "iters: expected a positive integer")])
def test_corollary1_table_checks_its_arguments_before_solving(kw, match, monkeypatch):
    """restarts=0 raised 'min() arg is an empty sequence', and bad widths were caught only after
    the convex solve; both are refused first now (the solve is never reached)."""
    monkeypatch.setattr(I, "convex_ball", lambda *a, **k: pytest.fail("solved before checking"))
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((6, 2)), rng.standard_normal(6)
    args = dict(widths=[2], restarts=1, iters=10) | kw
    with pytest.raises(ValueError, match=match):
        I.corollary1_table(X, y, 0.05, "squared", args.pop("widths"), **args)
