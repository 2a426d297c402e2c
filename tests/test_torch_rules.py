"""The update rule as an argument of pyireg.torch's fused step (``packed_step(rule=...)``,
``packed_apply_update(rule=...)``, ``PackedOptimizer``): every rule equals the numpy API's bit for
bit (fused and unfused, alone and packed, awkward shapes), Adam/AdamW and Nesterov equal torch's
optimizers network by network, state dicts continue bit for bit, bad input gives one-line errors,
the plain-torch twin (``_rules``) and the emulated CUDA engine agree under the tolerance rule."""
import io
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import pyireg
import pyireg.cuda as pc
import pyireg.optim as po
import pyireg.torch as pt
from pyireg import reference as R
from pyireg.torch import _ops

RULES = ["momentum_sgd", "nesterov_sgd", "path_sgd", "ddp_sgd", "adam", "adamw"]
NUMPY = {"momentum_sgd": po.MomentumSGD, "nesterov_sgd": po.NesterovSGD, "path_sgd": po.PathSGD,
         "ddp_sgd": po.DDPSGD, "adam": po.Adam, "adamw": po.AdamW}
LAYOUTS = [[1], [7], [1, 3, 5, 1, 37]]


@pytest.fixture(autouse=True)
def _one_native_thread():
    pyireg.set_num_threads(1)


def _hyper(rule, N, seed=0):
    """Per-network hyper-parameters of the rule (numpy arrays), varied across networks."""
    r = np.random.default_rng(seed)
    h = dict(lr=r.uniform(0.01, 0.2, N), weight_decay=r.choice([0.0, 1e-3, 5e-2], N))
    if rule in ("momentum_sgd", "nesterov_sgd", "path_sgd"):
        h["momentum"] = r.choice([0.0, 0.5, 0.9], N)
    if rule == "ddp_sgd":
        h["alpha"] = r.choice([0.0, 0.3, 1.0], N)
    if rule in ("adam", "adamw"):
        h["lr"] = h["lr"] / 10
        h["betas"] = (r.uniform(0.8, 0.95, N), r.choice([0.99, 0.999], N))
        h["eps"] = r.choice([1e-8, 1e-6], N)
    return h


def _numpy_opt(rule, model, h):
    kw = dict(h)
    if rule == "path_sgd" or rule == "momentum_sgd" or rule == "nesterov_sgd":
        return NUMPY[rule](model, kw.pop("lr"), **kw)
    return NUMPY[rule](model, **kw)


def _torch_opt(rule, module, h, dtype):
    kw = {k: (tuple(torch.tensor(b, dtype=dtype) for b in v) if k == "betas" else torch.tensor(v, dtype=dtype))
          for k, v in h.items()}
    return pt.PackedOptimizer(module, rule, **kw)


def _data(B, d, k, seed, dtype, loss="cross_entropy"):
    r = np.random.default_rng(seed)
    X = r.standard_normal((B, d)).astype(dtype)
    y = r.integers(0, k, B).astype(np.int32) if loss == "cross_entropy" else r.standard_normal((B, k)).astype(dtype)
    return X, y


def _run_both(rule, widths, d, k, B, dtype, steps, fused, loss="cross_entropy", seed=0):
    """(numpy model, torch module) after ``steps`` steps of the rule from the same weights and
    hyper-parameters on the same batches."""
    m = pyireg.PackedMLP(widths, d, k, seed=seed, dtype=dtype, loss=loss)
    mod = pt.PackedMLP(widths, d, k, seed=seed, dtype=dtype, loss=loss)
    np.testing.assert_array_equal(m.U, mod.U.detach().numpy())
    h = _hyper(rule, len(widths), seed)
    nopt, topt = _numpy_opt(rule, m, h), _torch_opt(rule, mod, h, mod.dtype)
    for s in range(steps):
        X, y = _data(B, d, k, 100 + s, dtype, loss)
        ln = nopt.step(X, y)
        Xt, yt = torch.from_numpy(X), torch.from_numpy(y).long() if loss == "cross_entropy" else torch.from_numpy(y)
        if fused or s % 2:
            lt = mod.train_step(Xt, yt, topt)
            np.testing.assert_array_equal(lt.numpy(), ln.astype(dtype))
        else:
            topt.zero_grad()
            mod.losses(Xt, yt).sum().backward()
            if rule == "ddp_sgd":
                topt.prepare(Xt)
            topt.step()
    return m, mod, nopt, topt


# --------------------------------------------------------------------------- bit for bit with numpy
@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("widths", LAYOUTS, ids=["width1", "one", "mixed"])
def test_each_rule_equals_the_numpy_api_bit_for_bit(rule, widths):
    """Fused steps (train_step) and unfused ones (backward + step) alternate; weights and the
    rule's state equal pyireg.optim's optimizer of the rule bit for bit, in float32."""
    m, mod, nopt, topt = _run_both(rule, widths, 5, 3, 9, np.float32, 4, fused=False)
    np.testing.assert_array_equal(mod.U.detach().numpy(), m.U)
    np.testing.assert_array_equal(mod.V.detach().numpy(), m.V)
    first = {"ddp_sgd": "ddp_scale", "adam": "exp_avg", "adamw": "exp_avg"}.get(rule, "momentum_buffer")
    np.testing.assert_array_equal(topt.state[mod.U][first].numpy(), nopt.bufU)
    np.testing.assert_array_equal(topt.state[mod.V][first].numpy(), nopt.bufV)
    if rule in ("adam", "adamw"):
        np.testing.assert_array_equal(topt.state[mod.U]["exp_avg_sq"].numpy(), nopt.sqU)
        np.testing.assert_array_equal(topt.state[mod.U]["step"].numpy(), nopt.t)


@pytest.mark.parametrize("rule", RULES)
def test_batch_one_squared_loss_float64(rule):
    m, mod, _, _ = _run_both(rule, [2, 1, 4], 3, 2, 1, np.float64, 3, fused=True, loss="squared")
    np.testing.assert_array_equal(mod.U.detach().numpy(), m.U)
    np.testing.assert_array_equal(mod.V.detach().numpy(), m.V)


@pytest.mark.parametrize("rule", RULES)
def test_alone_equals_packed(rule):
    """A network trained alone ends bit for bit where its slice of the packed run ends."""
    widths, d, k = [1, 3, 6], 4, 3
    _, packed, _, _ = _run_both(rule, widths, d, k, 5, np.float64, 3, fused=True)
    full = pyireg.PackedMLP(widths, d, k, seed=0, dtype=np.float64)
    h = _hyper(rule, len(widths), 0)
    off = full.offsets
    for n in range(len(widths)):
        alone = pt.PackedMLP.from_numpy(pyireg.PackedMLP.from_weights(
            [widths[n]], full.U[off[n]:off[n + 1]].copy(), full.V[off[n]:off[n + 1]].copy(), dtype=np.float64))
        hn = {key: (tuple(b[n:n + 1] for b in v) if key == "betas" else v[n:n + 1]) for key, v in h.items()}
        opt = _torch_opt(rule, alone, hn, torch.float64)
        for s in range(3):
            X, y = _data(5, d, k, 100 + s, np.float64)
            alone.train_step(torch.from_numpy(X), torch.from_numpy(y).long(), opt)
        np.testing.assert_array_equal(alone.U.detach().numpy(), packed.U.detach().numpy()[off[n]:off[n + 1]])
        np.testing.assert_array_equal(alone.V.detach().numpy(), packed.V.detach().numpy()[off[n]:off[n + 1]])


@pytest.mark.parametrize("rule", RULES)
def test_fused_equals_apply_update_on_fused_gradients(rule):
    """packed_step equals packed_loss's gradients + packed_apply_update bit for bit (DDP-SGD: the
    scaling from packed_ddp_scale on the same batch)."""
    mod = pt.PackedMLP([1, 3, 5], 5, 3, seed=2, dtype=torch.float32)
    N = 3
    h = _hyper(rule, N, 1)
    X, y = (torch.from_numpy(a) for a in _data(7, 5, 3, 3, np.float32))
    y = y.long()
    outs = []
    for fused in (True, False):
        U, V = mod.U.detach().clone(), mod.V.detach().clone()
        sU, sV = torch.zeros_like(U), torch.zeros_like(V)
        f = lambda key: torch.tensor(h[key], dtype=torch.float32)      # noqa: E731
        extra = {}
        if rule in ("adam", "adamw"):
            extra = dict(state2_U=torch.zeros_like(U), state2_V=torch.zeros_like(V), eps=f("eps"),
                         beta1=torch.tensor(h["betas"][0], dtype=torch.float32),
                         beta2=torch.tensor(h["betas"][1], dtype=torch.float32),
                         steps=torch.zeros(N, dtype=torch.int64))
        mom = f("momentum") if "momentum" in h else torch.zeros(N)
        for _ in range(2):
            if fused:
                kw = dict(extra, alpha=f("alpha")) if rule == "ddp_sgd" else extra
                pt.packed_step(U, V, X, y, mod.offsets, sU, sV, f("lr"), mom, f("weight_decay"), rule=rule, **kw)
            else:
                _, gU, gV = _ops._kernels(U).loss(U, V, X, y.int(), None, mod.offsets, "relu", "cross_entropy", True)
                if rule == "ddp_sgd":
                    pt.packed_ddp_scale(U, V, X, mod.offsets, f("alpha"), sU, sV)
                pt.packed_apply_update(U, V, gU, gV, mod.offsets, sU, sV, f("lr"), mom, f("weight_decay"), rule=rule,
                                       **extra)
        outs.append((U, V, sU, sV, extra.get("steps")))
    for a, b in zip(*outs):
        if a is not None:
            assert torch.equal(a, b)


# --------------------------------------------------------------------------- against torch's optimizers
@pytest.mark.parametrize("rule", ["adam", "adamw"])
@pytest.mark.parametrize("loss", ["cross_entropy", "squared"])
def test_adam_matches_torch_optim_network_by_network(rule, loss):
    """Each network against its own torch.optim.Adam / AdamW with that network's lr, betas, eps
    and weight decay; fused and unfused steps alternate; float64, rtol 1e-9."""
    widths = [2, 1, 4, 3]
    mod = pt.PackedMLP(widths, 6, 3, seed=0, dtype=torch.float64, loss=loss)
    nets = R.modules_from_packed(mod.U.detach(), mod.V.detach(), mod.offsets.numpy(), dtype=torch.float64)
    h = _hyper(rule, len(widths), 4)
    opt = _torch_opt(rule, mod, h, torch.float64)
    cls = torch.optim.Adam if rule == "adam" else torch.optim.AdamW
    topts = [cls(n.parameters(), lr=float(h["lr"][i]), betas=(float(h["betas"][0][i]), float(h["betas"][1][i])),
                 eps=float(h["eps"][i]), weight_decay=float(h["weight_decay"][i])) for i, n in enumerate(nets)]
    for s in range(6):
        X, y = (torch.from_numpy(a) for a in _data(8, 6, 3, 200 + s, np.float64, loss))
        if loss == "cross_entropy":
            y = y.long()
        if s % 2:
            mod.train_step(X, y, opt)
        else:
            opt.zero_grad()
            mod.losses(X, y).sum().backward()
            opt.step()
        for n, o in zip(nets, topts):
            o.zero_grad()
            out = n(X)
            (F.cross_entropy(out, y) if loss == "cross_entropy" else R.squared_loss(out, y)).backward()
            o.step()
    U, V, _, _ = R.packed_from_modules(nets)
    torch.testing.assert_close(mod.U.detach(), torch.from_numpy(U), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(mod.V.detach(), torch.from_numpy(V), rtol=1e-9, atol=1e-12)


def test_nesterov_matches_torch_sgd_nesterov():
    widths = [2, 1, 4, 3]
    mod = pt.PackedMLP(widths, 6, 3, seed=1, dtype=torch.float64)
    nets = R.modules_from_packed(mod.U.detach(), mod.V.detach(), mod.offsets.numpy(), dtype=torch.float64)
    lr = np.array([0.1, 0.05, 0.2, 0.01])
    mom = np.array([0.9, 0.5, 0.1, 0.99])
    wd = np.array([0.0, 1e-2, 1e-3, 0.1])
    opt = pt.PackedOptimizer(mod, "nesterov_sgd", lr=torch.from_numpy(lr), momentum=torch.from_numpy(mom),
                             weight_decay=torch.from_numpy(wd))
    topts = [torch.optim.SGD(n.parameters(), lr=lr[i], momentum=mom[i], weight_decay=wd[i], nesterov=True)
             for i, n in enumerate(nets)]
    for s in range(6):
        X, y = (torch.from_numpy(a) for a in _data(8, 6, 3, 300 + s, np.float64))
        mod.train_step(X, y.long(), opt)
        for n, o in zip(nets, topts):
            o.zero_grad()
            F.cross_entropy(n(X), y.long()).backward()
            o.step()
    U, V, _, _ = R.packed_from_modules(nets)
    torch.testing.assert_close(mod.U.detach(), torch.from_numpy(U), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(mod.V.detach(), torch.from_numpy(V), rtol=1e-9, atol=1e-12)


def test_momentum_sgd_rule_equals_packed_sgd():
    """PackedOptimizer(rule="momentum_sgd") and PackedSGD take the same steps, bit for bit."""
    a, b = (pt.PackedMLP([1, 4, 2], 5, 3, seed=3) for _ in range(2))
    lr, mom = torch.tensor([0.1, 0.2, 0.05]), torch.tensor([0.9, 0.0, 0.5])
    oa = pt.PackedOptimizer(a, "momentum_sgd", lr=lr, momentum=mom, weight_decay=1e-3)
    ob = pt.PackedSGD(b, lr=lr, momentum=mom, weight_decay=1e-3)
    for s in range(4):
        X, y = (torch.from_numpy(v) for v in _data(6, 5, 3, s, np.float32))
        a.train_step(X, y.long(), oa)
        b.train_step(X, y.long(), ob)
    assert torch.equal(a.U, b.U) and torch.equal(a.V, b.V)


# --------------------------------------------------------------------------- state dicts
@pytest.mark.parametrize("rule", RULES)
def test_state_dict_round_trip_continues_bit_for_bit(rule):
    """Train 3 steps, save module and optimizer (torch.save), load them into fresh ones, train 3
    more: the same bits as 6 uninterrupted steps (a scheduler's lr change included)."""
    widths, d, k = [1, 3, 5], 4, 3
    h = _hyper(rule, len(widths), 5)
    batches = [tuple(torch.from_numpy(a) for a in _data(6, d, k, 400 + s, np.float32)) for s in range(6)]

    def fresh():
        mod = pt.PackedMLP(widths, d, k, seed=7)
        opt = _torch_opt(rule, mod, h, torch.float32)
        return mod, opt, torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)

    mod, opt, sched = fresh()
    for X, y in batches:
        mod.train_step(X, y.long(), opt)
        sched.step()
    mod2, opt2, sched2 = fresh()
    for X, y in batches[:3]:
        mod2.train_step(X, y.long(), opt2)
        sched2.step()
    buf = io.BytesIO()
    torch.save({"m": mod2.state_dict(), "o": opt2.state_dict(), "s": sched2.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=False)
    mod3, opt3, sched3 = fresh()
    mod3.load_state_dict(saved["m"])
    opt3.load_state_dict(saved["o"])
    sched3.load_state_dict(saved["s"])
    for X, y in batches[3:]:
        mod3.train_step(X, y.long(), opt3)
        sched3.step()
    assert torch.equal(mod3.U, mod.U) and torch.equal(mod3.V, mod.V)
    if rule in ("adam", "adamw"):
        assert opt3.state[mod3.U]["step"].tolist() == [6, 6, 6]
        assert opt3.state[mod3.U]["step"] is opt3.state[mod3.V]["step"]


# --------------------------------------------------------------------------- bad input
def _one_line(excinfo, *words):
    msg = str(excinfo.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, msg


@pytest.mark.parametrize("kwargs, exc, words", [
    (dict(rule="sgd", lr=0.1), ValueError, ["rule:", "'sgd'", "'adamw'"]),
    (dict(rule="adam", lr=0.1, momentum=0.9), ValueError, ["momentum:", "'adam'", "betas"]),
    (dict(rule="path_sgd", lr=0.1, betas=(0.9, 0.99)), ValueError, ["betas:", "'path_sgd'"]),
    (dict(rule="momentum_sgd", lr=0.1, alpha=0.5), ValueError, ["alpha:"]),
    (dict(rule="adam", lr=0.1, betas=(0.9, 1.0)), ValueError, ["beta2:", "[0, 1)", "1.0"]),
    (dict(rule="adam", lr=0.1, betas=0.9), ValueError, ["betas:", "pair"]),
    (dict(rule="adamw", lr=0.1, eps=0.0), ValueError, ["eps:", "> 0"]),
    (dict(rule="ddp_sgd", lr=0.1, alpha=1.5), ValueError, ["alpha:", "[0, 1]"]),
    (dict(rule="ddp_sgd", lr=0.1, alpha=torch.tensor([0.5, float("nan"), 0.1])), ValueError,
     ["alpha:", "nan", "index 1"]),
    (dict(rule="nesterov_sgd", lr=-1.0), ValueError, ["lr:", ">= 0"]),
    (dict(rule="adam", lr=torch.tensor([0.1, 0.2])), ValueError, ["lr:", "one value per network, 3"]),
])
def test_bad_optimizer_arguments(kwargs, exc, words):
    mod = pt.PackedMLP([1, 2, 3], 4, 2)
    with pytest.raises(exc) as e:
        opt = pt.PackedOptimizer(mod, **kwargs)
        mod.train_step(torch.randn(3, 4), torch.tensor([0, 1, 1]), opt)
    _one_line(e, *words)


def test_bad_parameters_and_order():
    mod = pt.PackedMLP([1, 2], 4, 2)
    with pytest.raises(ValueError) as e:
        pt.PackedOptimizer([mod.U, torch.nn.Parameter(torch.zeros(3))], "adam", lr=0.1)
    _one_line(e, "params:", "torch optimizer")
    with pytest.raises(ValueError) as e:
        pt.PackedOptimizer([mod.U], "adam", lr=0.1)
    _one_line(e, "params:", "U and V")
    with pytest.raises(ValueError) as e:
        pt.PackedOptimizer(mod, "adam", lr=0.1).add_param_group({"params": [], "rule": "adamw"})
    _one_line(e, "rule:", "'adam'")
    opt = pt.PackedOptimizer(mod, "ddp_sgd", lr=0.1)
    X, y = torch.randn(3, 4), torch.tensor([0, 1, 1])
    mod.losses(X, y).sum().backward()
    with pytest.raises(RuntimeError) as e:
        opt.step()
    _one_line(e, "prepare(X)")
    with pytest.raises(RuntimeError) as e:
        pt.PackedOptimizer(mod, "adam", lr=0.1).prepare(X)
    _one_line(e, "prepare:", "'ddp_sgd'")


def test_bad_operator_arguments():
    mod = pt.PackedMLP([1, 2], 4, 2)
    U, V, off = mod.U.detach().clone(), mod.V.detach().clone(), mod.offsets
    X, y = torch.randn(3, 4), torch.tensor([0, 1, 1])
    s = (torch.zeros_like(U), torch.zeros_like(V))
    h = [torch.full((2,), v) for v in (0.1, 0.0, 0.0)]
    N2 = torch.full((2,), 0.9)
    cases = [
        (dict(rule="Adam"), ["rule:", "'Adam'"]),
        (dict(rule="adam"), ["state2_U:", "'adam'", "None"]),
        (dict(rule="ddp_sgd"), ["alpha:", "'ddp_sgd'"]),
        (dict(rule="path_sgd", beta1=N2), ["beta1:", "not used by rule 'path_sgd'"]),
        (dict(rule="adam", state2_U=torch.zeros_like(U), state2_V=torch.zeros_like(V), beta1=N2, beta2=N2,
              eps=N2, steps=torch.zeros(2)), ["steps:", "int64"]),
        (dict(rule="adam", state2_U=torch.zeros_like(V), state2_V=torch.zeros_like(V), beta1=N2, beta2=N2,
              eps=N2, steps=torch.zeros(2, dtype=torch.int64)), ["state2_U:", "shape"]),
        (dict(rule="adam", state2_U=torch.zeros_like(U), state2_V=torch.zeros_like(V), beta1=N2, beta2=N2,
              eps=torch.full((3,), 0.1), steps=torch.zeros(2, dtype=torch.int64)), ["eps:", "shape (2,)"]),
        (dict(rule="adam", state2_U=torch.zeros_like(U), state2_V=torch.zeros_like(V), beta1=N2, beta2=N2,
              eps=N2, steps=torch.full((2,), -1, dtype=torch.int64)), ["steps:", ">= 0"]),
    ]
    for kw, words in cases:
        with pytest.raises((ValueError, TypeError)) as e:
            pt.packed_step(U, V, X, y, off, *s, *h, **kw)
        _one_line(e, *words)
    with pytest.raises(ValueError) as e:
        pt.packed_apply_update(U, V, U, V, off, *s, *h, rule="momentum_sgd", steps=torch.zeros(2, dtype=torch.int64))
    _one_line(e, "steps:", "not used by rule 'momentum_sgd'")


def test_operators_check_and_trace_with_rules():
    """opcheck of the in-place operators with the Adam and DDP-SGD arguments (declared mutations,
    fake kernels)."""
    mod = pt.PackedMLP([1, 3, 2], 4, 3, seed=1)
    U, V, off = mod.U.detach().clone(), mod.V.detach().clone(), mod.offsets
    X, y = torch.randn(5, 4), torch.randint(0, 3, (5,), dtype=torch.int32)
    N = 3
    h = [torch.full((N,), v) for v in (0.01, 0.0, 1e-3)]
    adam = (torch.rand_like(U), torch.rand_like(V), torch.full((N,), 0.9), torch.full((N,), 0.99),
            torch.full((N,), 1e-8), torch.tensor([0, 3, 1]))
    torch.library.opcheck(_ops.packed_step_op, (U.clone(), V.clone(), X, y, None, off, "relu", "cross_entropy",
                                                torch.rand_like(U), torch.rand_like(V), *h, "adamw", None, *adam))
    torch.library.opcheck(_ops.packed_step_op, (U.clone(), V.clone(), X, y, None, off, "relu", "cross_entropy",
                                                torch.rand_like(U), torch.rand_like(V), *h, "ddp_sgd",
                                                torch.full((N,), 0.5)))
    torch.library.opcheck(_ops.packed_apply_update_op, (U.clone(), V.clone(), torch.randn_like(U),
                                                        torch.randn_like(V), off, torch.rand_like(U),
                                                        torch.rand_like(V), *h, "relu", "cross_entropy", "adam",
                                                        *adam))
    torch.library.opcheck(_ops.packed_ddp_scale_op, (U, V, X, off, torch.full((N,), 0.5), torch.rand_like(U),
                                                     torch.rand_like(V)))


# --------------------------------------------------------------------------- twins and devices
def _twin_inputs(rule, dtype, seed=0):
    mod = pt.PackedMLP([1, 4, 2, 7], 5, 3, seed=seed, dtype=dtype)
    N = 4
    h = _hyper(rule, N, seed)
    f = lambda v: torch.tensor(v, dtype=dtype)      # noqa: E731
    extra = [None] * 7
    if rule == "ddp_sgd":
        extra[0] = f(h["alpha"])
    if rule in ("adam", "adamw"):
        extra[1:] = [torch.zeros_like(mod.U), torch.zeros_like(mod.V), f(h["betas"][0]), f(h["betas"][1]),
                     f(h["eps"]), torch.zeros(N, dtype=torch.int64)]
    mom = f(h["momentum"]) if "momentum" in h else torch.zeros(N, dtype=dtype)
    return mod, (f(h["lr"]), mom, f(h["weight_decay"])), tuple(extra)


@pytest.mark.parametrize("rule", RULES)
def test_torch_twin_of_the_rules_within_tolerance(rule):
    """The plain-torch rules (``_rules``, CUDA without pyireg._cuda) against the native ones:
    float32 native and twin errors against the float64 native run, under the tolerance rule."""
    from pyireg.torch._kernels_cuda import CompositeKernels
    X, y = (torch.from_numpy(a) for a in _data(9, 5, 3, 1, np.float64))
    results = {}
    for name, dtype, kernels in (("native32", torch.float32, None), ("twin32", torch.float32, CompositeKernels),
                                 ("native64", torch.float64, None), ("twin64", torch.float64, CompositeKernels)):
        mod, hyper, extra = _twin_inputs(rule, dtype)
        U, V = mod.U.detach().clone(), mod.V.detach().clone()
        sU, sV = torch.zeros_like(U), torch.zeros_like(V)
        extra = tuple(e.clone() if e is not None else None for e in extra)
        k = kernels or _ops._kernels(U)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)     # the composite path's "not built" warning
            for _ in range(3):
                k.step(U, V, X.to(dtype), y.int(), None, mod.offsets, "relu", "cross_entropy", sU, sV, *hyper, rule,
                       extra)
        results[name] = (U, V)
    for i, what in ((0, "U"), (1, "V")):
        pyireg.testing.assert_tolerance(results["native32"][i].numpy(), results["twin32"][i].numpy(),
                                        results["native64"][i].numpy(), f"{rule} {what}")
        torch.testing.assert_close(results["twin64"][i], results["native64"][i], rtol=1e-10, atol=1e-12)


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


@pytest.mark.parametrize("rule", ["momentum_sgd", "nesterov_sgd", "path_sgd", "ddp_sgd"])
def test_emulated_cuda_engine_runs_the_rule_like_the_cpu(rule):
    """Inside pyireg.cuda.emulate() the fused step runs the CUDA engine's rule: float32 result
    against the CPU's under the tolerance rule, the float64 CPU run as the reference; unfused
    steps (backward + step) too."""
    widths = [1, 3, 5, 1, 37]
    h = _hyper(rule, len(widths), 2)
    runs = {}
    for name, dtype, emulated in (("cpu32", torch.float32, False), ("emu32", torch.float32, True),
                                  ("cpu64", torch.float64, False)):
        mod = pt.PackedMLP(widths, 7, 4, seed=3, dtype=dtype)
        opt = _torch_opt(rule, mod, h, dtype)
        ctx = pc.emulate(schedule="random", seed=1) if emulated else _nullcontext()
        with ctx as em:
            for s in range(3):
                X, y = (torch.from_numpy(a) for a in _data(1 if s == 0 else 11, 7, 4, 500 + s, np.float64))
                X = X.to(dtype)
                if s == 1:
                    opt.zero_grad()
                    mod.losses(X, y.long()).sum().backward()
                    if rule == "ddp_sgd":
                        opt.prepare(X)
                    opt.step()
                else:
                    mod.train_step(X, y.long(), opt)
        if emulated:
            assert em.launches > 0
        runs[name] = mod
    for what in ("U", "V"):
        pyireg.testing.assert_tolerance(getattr(runs["emu32"], what).detach().numpy(),
                                        getattr(runs["cpu32"], what).detach().numpy(),
                                        getattr(runs["cpu64"], what).detach().numpy(), f"{rule} {what}")


@pytest.mark.parametrize("rule", ["adam", "adamw"])
def test_adam_on_the_cuda_engine_is_refused_in_one_line(rule):
    mod = pt.PackedMLP([1, 2], 4, 2)
    opt = pt.PackedOptimizer(mod, rule, lr=1e-3)
    with pc.emulate():
        with pytest.raises(ValueError) as e:
            mod.train_step(torch.randn(3, 4), torch.tensor([0, 1, 1]), opt)
    _one_line(e, "rule:", repr(rule), "CPU engine only")
    assert opt.state[mod.U]["step"].tolist() == [0, 0]       # nothing advanced


@pytest.mark.cuda
@pytest.mark.parametrize("rule", ["nesterov_sgd", "path_sgd", "ddp_sgd"])
def test_cuda_tensors_run_the_rule_like_the_cpu(rule):
    """On a GPU with pyireg._cuda: the rule on CUDA tensors against the CPU under the tolerance
    rule (the float64 CPU run as the reference); Adam refused there."""
    if not pc.is_available() or not torch.cuda.is_available():
        pytest.skip(pc.status())
    widths = [1, 3, 5, 1, 37]
    h = _hyper(rule, len(widths), 2)
    runs = {}
    for name, dtype, device in (("cpu32", torch.float32, "cpu"), ("gpu32", torch.float32, "cuda"),
                                ("cpu64", torch.float64, "cpu")):
        mod = pt.PackedMLP(widths, 7, 4, seed=3, dtype=dtype).to(device)
        opt = _torch_opt(rule, mod, h, dtype)
        for s in range(3):
            X, y = (torch.from_numpy(a).to(device) for a in _data(11, 7, 4, 500 + s, np.float64))
            mod.train_step(X.to(dtype), y.long(), opt)
        runs[name] = mod.cpu()
    for what in ("U", "V"):
        pyireg.testing.assert_tolerance(getattr(runs["gpu32"], what).detach().numpy(),
                                        getattr(runs["cpu32"], what).detach().numpy(),
                                        getattr(runs["cpu64"], what).detach().numpy(), f"{rule} {what} on CUDA")
    mod = pt.PackedMLP([1, 2], 4, 2).cuda()
    with pytest.raises(ValueError, match="CPU engine only"):
        mod.train_step(torch.randn(3, 4, device="cuda"), torch.tensor([0, 1, 1], device="cuda"),
                       pt.PackedOptimizer(mod, "adam", lr=1e-3))


def test_two_modules_in_one_optimizer_step_like_two_optimizers():
    """Two modules (one group each, different values) in one PackedOptimizer take the steps two
    optimizers take, fused for one and unfused (one step() for both) for the other."""
    def pair():
        return pt.PackedMLP([2, 1], 4, 3, seed=1), pt.PackedMLP([3], 4, 3, seed=2)
    a1, a2 = pair()
    opt = pt.PackedOptimizer([{"params": a1.parameters()}, {"params": a2.parameters(), "lr": 0.02}], "adam",
                             lr=torch.tensor([0.01, 0.03]), betas=(0.8, 0.99))
    b1, b2 = pair()
    o1 = pt.PackedOptimizer(b1, "adam", lr=torch.tensor([0.01, 0.03]), betas=(0.8, 0.99))
    o2 = pt.PackedOptimizer(b2, "adam", lr=0.02, betas=(0.8, 0.99))
    for s in range(3):
        X, y = (torch.from_numpy(v) for v in _data(5, 4, 3, 600 + s, np.float32))
        a1.train_step(X, y.long(), opt)
        b1.train_step(X, y.long(), o1)
        opt.zero_grad()
        (a1.losses(X, y.long()).sum() * 0 + a2.losses(X, y.long()).sum()).backward()
        a1.U.grad = a1.V.grad = None          # a1 stepped fused already
        opt.step()
        o2.zero_grad()
        b2.losses(X, y.long()).sum().backward()
        o2.step()
    for a, b in ((a1, b1), (a2, b2)):
        assert torch.equal(a.U, b.U) and torch.equal(a.V, b.V)
