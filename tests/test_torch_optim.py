"""pyireg.torch.PackedSGD: torch.optim.SGD per network (per-network values, momentum switched on
and off), learning-rate schedulers, state dicts, mixed parameter groups, a layer alone, and bad
hyper-parameters."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pyireg
import pyireg.torch as pt
from pyireg import reference as R

WIDTHS = [2, 1, 4, 3]
N = len(WIDTHS)


@pytest.fixture(autouse=True)
def _one_native_thread():
    pyireg.set_num_threads(1)


def _pair(seed=0, dtype=torch.float64):
    """A module and its twin: one nn.Sequential per network with copies of the weights."""
    m = pt.PackedMLP(WIDTHS, 6, 3, seed=seed, dtype=dtype)
    nets = R.modules_from_packed(m.U.detach(), m.V.detach(), m.offsets.numpy(), dtype=dtype)
    return m, nets


def _batch(step, dtype=torch.float64):
    g = torch.Generator().manual_seed(100 + step)
    return torch.randn(8, 6, generator=g, dtype=dtype), torch.randint(0, 3, (8,), generator=g)


def _step_both(m, opt, nets, topt, step):
    X, y = _batch(step, m.dtype)
    opt.zero_grad()
    m.losses(X, y).sum().backward()
    opt.step()
    R.step(nets, topt, X, y)


def _assert_same(m, nets, rtol=1e-12, atol=1e-14):
    U, V, _, _ = R.packed_from_modules(nets)
    torch.testing.assert_close(m.U.detach(), torch.from_numpy(U), rtol=rtol, atol=atol)
    torch.testing.assert_close(m.V.detach(), torch.from_numpy(V), rtol=rtol, atol=atol)


def test_per_network_values_follow_torch_sgd_groups():
    """Each network steps like torch.optim.SGD with its own lr, momentum and weight decay (the
    twin has one parameter group per network), including momentum switched off and on again:
    after a step with momentum 0 torch keeps no buffer, so the next step with momentum starts
    from the gradient alone."""
    m, nets = _pair()
    lr = torch.tensor([0.1, 0.3, 0.05, 0.2], dtype=torch.float64)
    mom = torch.tensor([0.9, 0.0, 0.5, 0.0], dtype=torch.float64)
    wd = torch.tensor([0.0, 1e-2, 1e-3, 0.1], dtype=torch.float64)
    opt = pt.PackedSGD(m, lr=lr, momentum=mom, weight_decay=wd)
    topt = R.make_sgd(nets, lr.numpy(), mom.numpy(), wd.numpy())
    schedule = [[0.9, 0.0, 0.5, 0.0], [0.9, 0.0, 0.5, 0.0], [0.0, 0.8, 0.5, 0.0], [0.7, 0.8, 0.0, 0.6],
                [0.7, 0.8, 0.3, 0.6], [0.0, 0.0, 0.0, 0.0], [0.9, 0.9, 0.9, 0.9]]
    for step, ms in enumerate(schedule):
        opt.param_groups[0]["momentum"] = torch.tensor(ms, dtype=torch.float64)
        R.set_hyper(topt, momentum=ms)
        _step_both(m, opt, nets, topt, step)
        _assert_same(m, nets)
        for n, net in enumerate(nets):                       # the buffers too, where torch has one
            tbuf = topt.state[net[0].weight].get("momentum_buffer")
            rows = slice(int(m.offsets[n]), int(m.offsets[n + 1]))
            if tbuf is None:
                assert (n == 1 and step < 2) or (n == 3 and step < 3)
            else:
                torch.testing.assert_close(opt.state[m.U]["momentum_buffer"][rows], tbuf, rtol=1e-12, atol=1e-14)


def test_momentum_zero_everywhere_makes_no_buffer():
    """Plain SGD (momentum 0): like torch.optim.SGD, no momentum buffer in the state; a zeroed
    scratch stands in for the native rule. Momentum switched on later starts from the gradient."""
    m, nets = _pair(seed=5)
    opt = pt.PackedSGD(m, lr=0.2, weight_decay=1e-2)
    topt = R.make_sgd(nets, 0.2, 0.0, 1e-2)
    for step in range(3):
        _step_both(m, opt, nets, topt, step)
        m.train_step(*_batch(10 + step), opt)
        R.step(nets, topt, *_batch(10 + step))
    assert all("momentum_buffer" not in opt.state[p] for p in (m.U, m.V))
    _assert_same(m, nets)
    opt.param_groups[0]["momentum"] = 0.9
    R.set_hyper(topt, momentum=0.9)
    for step in range(3, 5):
        _step_both(m, opt, nets, topt, step)
    _assert_same(m, nets)


def test_scalar_values_and_float32():
    m, nets = _pair(seed=3, dtype=torch.float32)
    opt = pt.PackedSGD(m.parameters(), lr=0.1, momentum=0.5, weight_decay=1e-3)
    topt = R.make_sgd(nets, 0.1, 0.5, 1e-3)
    for step in range(5):
        _step_both(m, opt, nets, topt, step)
    _assert_same(m, nets, rtol=1e-5, atol=1e-6)
    assert opt.param_groups[0]["lr_scale"] is None and opt.param_groups[0]["lr"] == 0.1


@pytest.mark.parametrize("kind", ["StepLR", "ExponentialLR", "CosineAnnealingLR", "OneCycleLR"])
def test_schedulers(kind):
    """A scheduler drives the group's scalar lr; per-network rates are that scalar times
    lr_scale, so the twin (a group per network, same scheduler) steps alike. OneCycleLR also
    cycles the momentum, one value for every network."""
    m, nets = _pair(seed=1)
    lr = torch.tensor([0.1, 0.3, 0.05, 0.2])
    per_network = kind != "OneCycleLR"
    opt = pt.PackedSGD(m, lr=lr if per_network else 0.1, momentum=0.5)
    topt = R.make_sgd(nets, lr.numpy() if per_network else 0.1, 0.5, 0.0)

    def make(o):
        if kind == "StepLR":
            return torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.3)
        if kind == "ExponentialLR":
            return torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.8)
        if kind == "CosineAnnealingLR":
            return torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=5)
        return torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.4, total_steps=8, base_momentum=0.6,
                                                   max_momentum=0.9)
    sched, tsched = make(opt), make(topt)
    if per_network:
        assert sched.get_last_lr() == [1.0]
    for step in range(6):
        _step_both(m, opt, nets, topt, step)
        sched.step()
        tsched.step()
    _assert_same(m, nets)
    if kind == "StepLR":
        assert opt.param_groups[0]["lr"] == pytest.approx(0.3 ** 3)
    if kind == "OneCycleLR":
        assert opt.param_groups[0]["momentum"] == pytest.approx(topt.param_groups[0]["momentum"])


def test_state_dict_round_trip_continues_identically():
    m, _ = _pair(seed=2, dtype=torch.float32)
    opt = pt.PackedSGD(m, lr=torch.tensor([0.1, 0.3, 0.05, 0.2]), momentum=torch.tensor([0.9, 0.0, 0.5, 0.7]))
    for step in range(3):
        m.train_step(*_batch(step, torch.float32), opt)
    m2 = pt.PackedMLP(WIDTHS, 6, 3, seed=99)
    opt2 = pt.PackedSGD(m2, lr=0.5, momentum=0.1)
    m2.load_state_dict(copy.deepcopy(m.state_dict()))
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))
    assert torch.equal(opt2.param_groups[0]["lr_scale"], opt.param_groups[0]["lr_scale"])
    for o in (opt, opt2):                        # momentum on for network 1: its stale buffer must be cleared
        o.param_groups[0]["momentum"] = torch.tensor([0.9, 0.6, 0.5, 0.7])
    for step in range(3, 6):
        X, y = _batch(step, torch.float32)
        assert torch.equal(m.train_step(X, y, opt), m2.train_step(X, y, opt2))
    assert torch.equal(m.U, m2.U) and torch.equal(m.V, m2.V)


def test_pickled_with_its_module_continues_identically():
    import pickle
    m, _ = _pair(seed=6, dtype=torch.float32)
    opt = pt.PackedSGD(m, lr=torch.tensor([0.1, 0.3, 0.05, 0.2]), momentum=0.5)
    m.train_step(*_batch(0, torch.float32), opt)
    m2, opt2 = pickle.loads(pickle.dumps((m, opt)))
    assert m2.U is opt2.param_groups[0]["params"][0]
    for step in range(1, 3):
        X, y = _batch(step, torch.float32)
        assert torch.equal(m.train_step(X, y, opt), m2.train_step(X, y, opt2))
        for mod, o in ((m, opt), (m2, opt2)):
            o.zero_grad()
            mod.losses(X, y).sum().backward()
            o.step()
    assert torch.equal(m.U, m2.U) and torch.equal(m.V, m2.V)


def test_mixed_groups_a_feature_layer_and_frozen_layer():
    """A feature layer in its own group (torch.optim.SGD's update), a packed module with
    per-network rates, and V frozen (U alone: the same arithmetic in torch, row by row)."""
    torch.manual_seed(0)
    feat = nn.Linear(5, 6).double()
    m, nets = _pair(seed=4)
    m.V.requires_grad_(False)
    for n in nets:
        n[2].weight.requires_grad_(False)
    tfeat = copy.deepcopy(feat)
    lr = torch.tensor([0.1, 0.3, 0.05, 0.2])
    opt = pt.PackedSGD([{"params": feat.parameters(), "lr": 0.02, "momentum": 0.9},
                        {"params": [m.U], "lr": lr, "momentum": 0.5, "weight_decay": 1e-3}], lr=0.0)
    groups = [{"params": list(tfeat.parameters()), "lr": 0.02, "momentum": 0.9}]
    groups += [{"params": [n[0].weight], "lr": float(lr[i]), "momentum": 0.5, "weight_decay": 1e-3}
               for i, n in enumerate(nets)]
    topt = torch.optim.SGD(groups, lr=0.0)
    for step in range(5):
        X, y = _batch(step)
        X = X[:, :5]
        opt.zero_grad()
        m.losses(feat(X), y).sum().backward()
        opt.step()
        topt.zero_grad()
        h = tfeat(X)
        torch.stack([F.cross_entropy(n(h), y) for n in nets]).sum().backward()
        topt.step()
    _assert_same(m, nets)
    torch.testing.assert_close(feat.weight, tfeat.weight, rtol=1e-12, atol=1e-14)
    assert m.V.grad is None


def test_parameters_without_gradients_are_skipped_and_closure():
    m, _ = _pair()
    opt = pt.PackedSGD(m, lr=0.1, momentum=0.9)
    U0 = m.U.detach().clone()
    opt.step()                                            # no gradients yet: nothing moves
    assert torch.equal(m.U, U0) and len(opt.state) == 0
    X, y = _batch(0)

    def closure():
        opt.zero_grad()
        loss = m.losses(X, y).sum()
        loss.backward()
        return loss
    loss = opt.step(closure)
    assert loss.requires_grad and not torch.equal(m.U, U0)


def test_bad_hyper_parameters_name_the_argument():
    m, _ = _pair()
    feat = nn.Linear(3, 6)
    cases = [
        (dict(lr=-0.1), ValueError, "lr: expected finite values >= 0, got -0.1"),
        (dict(lr=float("nan")), ValueError, "lr: expected finite values >= 0"),
        (dict(lr=0.1, momentum=1.0), ValueError, r"momentum: expected values in \[0, 1\), got 1.0"),
        (dict(lr=0.1, weight_decay=torch.tensor([0, 0, -1.0, 0])), ValueError,
         "weight_decay: expected finite values >= 0, got -1.0 at index 2"),
        (dict(lr=torch.ones(2, 2)), ValueError, "lr: expected a scalar or a 1-d tensor"),
        (dict(lr=True), TypeError, "lr: expected a real number"),
        (dict(lr="fast"), TypeError, "lr: expected a real number"),
        (dict(lr="0.1"), TypeError, "lr: expected a real number .*, got str '0.1'"),     # not read as 0.1
        (dict(lr=0.1, momentum="0.9"), TypeError, "momentum: expected a real number"),
        (dict(lr=torch.ones(3)), ValueError, r"lr: expected one value per network, 4, got shape \(3,\)"),
        (dict(lr=0.1, momentum=torch.zeros(5)), ValueError, "momentum: expected one value per network, 4"),
    ]
    for kw, exc, match in cases:
        with pytest.raises(exc, match=match):
            pt.PackedSGD(m, **kw)
    with pytest.raises(ValueError, match="lr_scale: per-network values apply to the U and V of pyireg PackedMLP "
                                         "modules only, but parameter group 0 also holds 2 other parameter"):
        pt.PackedSGD(list(feat.parameters()) + list(m.parameters()), lr=torch.ones(4))
    with pytest.raises(ValueError, match=r"param_group: unknown options \['nesterov'\]"):
        pt.PackedSGD([{"params": m.parameters(), "nesterov": True}], lr=0.1)
    opt = pt.PackedSGD(m, lr=torch.full((4,), 0.1))
    opt.param_groups[0]["momentum"] = 1.5                 # changed by hand between steps: checked at the step
    X, y = _batch(0)
    m.losses(X, y).sum().backward()
    with pytest.raises(ValueError, match=r"momentum: expected values in \[0, 1\) \(parameter group 0\)"):
        opt.step()


def test_two_threads_making_the_first_step_share_one_momentum_buffer():
    """Two threads each make the first fused step of a fresh optimizer: the state must hold one
    momentum buffer used by both steps (a lost buffer loses one step's momentum), so weights
    and buffers end as two serial steps on the same batch end."""
    import threading
    widths, d, k = [3000, 1000, 7], 300, 10
    g = torch.Generator().manual_seed(7)
    X, y = torch.randn(32, d, generator=g), torch.randint(0, k, (32,), generator=g)
    ref = pt.PackedMLP(widths, d, k, seed=8)
    ropt = pt.PackedSGD(ref, lr=0.05, momentum=0.9)
    ref.train_step(X, y, ropt)
    ref.train_step(X, y, ropt)
    for _ in range(8):
        m = pt.PackedMLP(widths, d, k, seed=8)
        opt = pt.PackedSGD(m, lr=0.05, momentum=0.9)
        barrier, errors = threading.Barrier(2), []

        def run():
            try:
                barrier.wait(30)
                m.train_step(X, y, opt)
            except BaseException as e:  # noqa: BLE001  (reported to the test thread)
                errors.append(e)

        ts = [threading.Thread(target=run) for _ in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        assert not errors, errors
        for p, rp in ((m.U, ref.U), (m.V, ref.V)):
            torch.testing.assert_close(opt.state[p]["momentum_buffer"], ropt.state[rp]["momentum_buffer"],
                                       rtol=0, atol=0)
            torch.testing.assert_close(p.detach(), rp.detach(), rtol=0, atol=0)


def _in_threads(work, n=2):
    import threading
    errors = []

    def run():
        try:
            work()
        except BaseException as e:  # noqa: BLE001  (reported to the test thread)
            errors.append(e)
    ts = [threading.Thread(target=run) for _ in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert not errors, errors


def test_threads_sharing_an_adam_optimizer_count_every_step():
    """Adam's step counts are read before the native step and written back after it: both under
    one lock, so two threads' 20 steps each make 40, and the weights end as the serial run's
    (Adam's result depends on the order of identical batches only through the count)."""
    g = torch.Generator().manual_seed(1)
    X, y = torch.randn(64, 16, generator=g), torch.randint(0, 3, (64,), generator=g)
    ref = pt.PackedMLP([20, 30, 10], 16, 3, seed=0)
    ropt = pt.PackedOptimizer(ref, "adam", lr=1e-2)
    for _ in range(40):
        ref.train_step(X, y, ropt)
    m = pt.PackedMLP([20, 30, 10], 16, 3, seed=0)
    opt = pt.PackedOptimizer(m, "adam", lr=1e-2)
    _in_threads(lambda: [m.train_step(X, y, opt) for _ in range(20)])
    assert opt.state[m.U]["step"].tolist() == [40, 40, 40]
    torch.testing.assert_close(m.U.detach(), ref.U.detach(), rtol=0, atol=0)


def test_an_engine_evicted_while_in_use_is_not_built_twice():
    """The engine's reader/writer lock keeps two threads from writing one module's weights at
    once, so a layout has one engine at a time: one evicted (more layouts in use than the
    cache keeps) or cleared while a call still holds it is handed out again, not built anew
    (a second engine would let another thread's step write the same weights concurrently)."""
    from pyireg.torch import _kernels_cpu as K
    m = pt.PackedMLP([20, 30, 10], 16, 3, seed=0)
    held = K._engine(m.U, m.V, m.offsets, "relu", "cross_entropy")       # a step in progress holds it
    before = pt.engine_cache_info()["evictions"]
    for i in range(20):                                                 # 20 more layouts than the 16 kept
        pt.PackedMLP([i + 1], 4, 2)(torch.randn(2, 4))
    assert pt.engine_cache_info()["evictions"] > before
    assert K._engine(m.U, m.V, m.offsets, "relu", "cross_entropy") is held
    pt.clear_engine_cache()
    assert K._engine(m.U, m.V, m.offsets, "relu", "cross_entropy") is held


def test_loading_another_optimizers_state_is_refused_before_anything_changes():
    """torch.optim.SGD(nesterov=True)'s state loaded into PackedSGD and trained as plain momentum
    SGD; another rule's state loaded into a PackedOptimizer and failed at the next step with a
    bare KeyError. Each is one ValueError at load; torch.optim.SGD's plain state still loads."""
    X, y = torch.randn(8, 4), torch.randint(0, 3, (8,))

    def stepped(make_opt):
        m = pt.PackedMLP([2, 3], 4, 3, seed=0)
        o = make_opt(m)
        o.zero_grad()
        m.losses(X, y).sum().backward()
        o.step()
        return o.state_dict()
    cases = [
        (lambda m: torch.optim.SGD(m.parameters(), lr=.1, momentum=.9, nesterov=True),
         lambda m: pt.PackedSGD(m, lr=.1, momentum=.9), "nesterov=True, which this PackedSGD does not run"),
        (lambda m: torch.optim.SGD(m.parameters(), lr=.1, momentum=.9, dampening=.1),
         lambda m: pt.PackedSGD(m, lr=.1, momentum=.9), "dampening=0.1"),
        (lambda m: torch.optim.Adam(m.parameters(), lr=.1),
         lambda m: pt.PackedSGD(m, lr=.1), "has no 'momentum'"),
        (lambda m: pt.PackedOptimizer(m, "adam", lr=.1),
         lambda m: pt.PackedOptimizer(m, "momentum_sgd", lr=.1, momentum=.9), "of rule 'adam'; this is"),
        (lambda m: pt.PackedSGD(m, lr=.1, momentum=.9),
         lambda m: pt.PackedOptimizer(m, "adam", lr=.1), "not a PackedOptimizer's"),
        (lambda m: torch.optim.Adam(m.parameters(), lr=.1),
         lambda m: pt.PackedOptimizer(m, "adam", lr=.1), "not a PackedOptimizer's"),
    ]
    for src, dst, match in cases:
        state = stepped(src)
        opt = dst(pt.PackedMLP([2, 3], 4, 3, seed=0))
        before = copy.deepcopy(opt.state_dict())
        with pytest.raises(ValueError, match=match):
            opt.load_state_dict(state)
        assert opt.state_dict()["param_groups"] == before["param_groups"]
    opt = pt.PackedSGD(pt.PackedMLP([2, 3], 4, 3, seed=0), lr=.1, momentum=.9)
    opt.load_state_dict(stepped(lambda m: torch.optim.SGD(m.parameters(), lr=.1, momentum=.9)))
    assert opt.state_dict()["state"]
