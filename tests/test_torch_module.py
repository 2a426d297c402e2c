"""pyireg.torch.PackedMLP as an nn.Module: inside a larger model against a plain torch twin,
torch.compile against eager, the fused step against the numpy API, state dicts, pickling,
conversions without copies, and bad inputs."""
import copy
import io
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pyireg
import pyireg.torch as pt
from pyireg import reference as R

WIDTHS = [1, 3, 2, 5, 8]


@pytest.fixture(autouse=True)
def _one_native_thread():
    """Many tiny native calls: one thread spares them the parallel regions' start-up on a busy
    machine (results do not depend on the thread count; conftest restores the setting)."""
    pyireg.set_num_threads(1)


def _data(B=16, d=12, k=4, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, d, generator=g, dtype=dtype), torch.randint(0, k, (B,), generator=g)


def _network_losses(out, y):
    """Per-network mean cross-entropy of outputs (N, B, k)."""
    N, B, k = out.shape
    return F.cross_entropy(out.reshape(-1, k), y.repeat(N), reduction="none").view(N, B).mean(1)


# --------------------------------------------------------------------------- construction, conversions
def test_same_weights_as_the_numpy_model_and_shared_memory():
    m = pt.PackedMLP(WIDTHS, 12, 4, seed=7)
    ref = pyireg.PackedMLP(WIDTHS, 12, 4, seed=7)
    assert np.array_equal(m.U.detach().numpy(), ref.U) and np.array_equal(m.V.detach().numpy(), ref.V)
    assert isinstance(m.U, nn.Parameter) and m.U.shape == (sum(WIDTHS), 12) and m.V.shape == (sum(WIDTHS), 4)
    assert [n for n, _ in m.named_parameters()] == ["U", "V"]
    assert m.offsets.tolist() == [0, 1, 4, 6, 11, 19] and m.num_networks == 5 and m.dtype == torch.float32
    u2, v2 = m.network(3)
    assert u2.shape == (5, 12) and u2.data_ptr() == m.U[6:].data_ptr()

    numpy_view = m.to_numpy()
    assert np.shares_memory(numpy_view.U, m.U.detach().numpy()) and np.shares_memory(numpy_view.V, m.V.detach().numpy())
    X, y = _data()
    pyireg.MomentumSGD(numpy_view, lr=0.5).step(X.numpy(), y.numpy())       # a numpy step, seen by the module
    assert not np.array_equal(m.U.detach().numpy(), ref.U)
    assert np.array_equal(m.U.detach().numpy(), numpy_view.U)

    back = pt.PackedMLP.from_numpy(ref)
    assert back.U.data_ptr() == ref.U.ctypes.data and back.V.data_ptr() == ref.V.ctypes.data
    with torch.no_grad():
        back.U.mul_(2)
    assert np.array_equal(ref.U, back.U.detach().numpy())
    assert back.widths == WIDTHS and back.activation == "relu" and back.loss == "cross_entropy"


def test_forward_equals_the_numpy_model_any_leading_shape_and_dtype():
    m = pt.PackedMLP(WIDTHS, 12, 4, seed=1)
    ref = m.to_numpy()
    X, _ = _data(B=6)
    out = m(X)
    assert out.shape == (5, 6, 4) and np.array_equal(out.detach().numpy(), ref.forward(X.numpy()))
    X3 = torch.randn(2, 3, 12)
    assert m(X3).shape == (5, 2, 3, 4)
    assert torch.equal(m(X3), m(X3.reshape(6, 12)).view(5, 2, 3, 4))
    assert m(X[0]).shape == (5, 4)
    X64 = X.double()
    assert torch.equal(m(X64), m(X))                           # converted to the module's dtype
    Xs = torch.randn(6, 24)[:, ::2]                            # any strides
    assert not Xs.is_contiguous() and torch.equal(m(Xs), m(Xs.contiguous()))


def test_meta_module_gives_shapes():
    m = pt.PackedMLP(WIDTHS, 12, 4).to("meta")
    out = m(torch.empty(7, 12, device="meta"))
    assert out.device.type == "meta" and out.shape == (5, 7, 4)
    assert m.losses(torch.empty(7, 12, device="meta"), torch.zeros(7, dtype=torch.long, device="meta")).shape == (5,)


def test_bad_inputs():
    m = pt.PackedMLP(WIDTHS, 12, 4)
    X, y = _data()
    with pytest.raises(TypeError, match=r"X: expected a floating tensor \(float32, float64, .*got torch.int64"):
        m(torch.ones(3, 12, dtype=torch.long))
    with pytest.raises(TypeError, match="X: expected a torch.Tensor, got ndarray"):
        m(X.numpy())
    with pytest.raises(ValueError, match=r"X: expected shape \(\*, 12\), got \(3, 11\)"):
        m(torch.ones(3, 11))
    with pytest.raises(ValueError, match="X: expected a 2-d batch"):
        m.losses(torch.ones(2, 3, 12), y)
    with pytest.raises(TypeError, match="y: expected integer class labels"):
        m.losses(X, y.float())
    with pytest.raises(TypeError, match="U: expected float32 or float64 parameters, got torch.float16"):
        copy.deepcopy(m).half()(X)
    with pytest.raises(ValueError, match="dtype: expected"):
        pt.PackedMLP(WIDTHS, 12, 4, dtype=torch.float16)
    with pytest.raises(ValueError, match="widths: expected positive integers"):
        pt.PackedMLP([2, 0], 12, 4)


# --------------------------------------------------------------------------- inside a larger model
def _twin(model):
    """The plain-torch twin of nn.Sequential(Linear, ReLU, PackedMLP): the same feature layers
    and one nn.Sequential per network, holding copies of the weights."""
    packed = model[2]
    features = copy.deepcopy(model[:2])
    nets = R.modules_from_packed(packed.U.detach(), packed.V.detach(), packed.offsets.numpy(), packed.activation,
                                 dtype=packed.dtype)
    return features, nets


def _twin_losses(features, nets, X, y):
    h = features(X)
    return torch.stack([F.cross_entropy(n(h), y) for n in nets])


@pytest.mark.parametrize("optimizer", ["SGD", "Adam", "PackedSGD"])
def test_trains_inside_a_larger_model_like_its_torch_twin(optimizer):
    """nn.Sequential(Linear(12, 8), ReLU(), PackedMLP(...)): 20 optimizer steps end to end (the
    first layer trained through the packed model's input gradient) give the weights of a plain
    torch twin, in float64, with torch optimizers and with PackedSGD."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 8), nn.ReLU(), pt.PackedMLP(WIDTHS, 8, 4, seed=2)).double()
    features, nets = _twin(model)
    twin_params = list(features.parameters()) + [p for n in nets for p in n.parameters()]
    first_layer = model[0].weight.detach().clone()
    lr = 0.05
    if optimizer == "SGD":
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-3)
        topt = torch.optim.SGD(twin_params, lr=lr, momentum=0.9, weight_decay=1e-3)
    elif optimizer == "Adam":
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        topt = torch.optim.Adam(twin_params, lr=1e-2)
    else:
        opt = pt.PackedSGD(model, lr=lr, momentum=0.9, weight_decay=1e-3)
        topt = torch.optim.SGD(twin_params, lr=lr, momentum=0.9, weight_decay=1e-3)
    for step in range(20):
        X, y = _data(B=10, seed=step, dtype=torch.float64)
        opt.zero_grad()
        losses = _network_losses(model(X), y) if step % 2 else model[2].losses(model[:2](X), y)
        losses.sum().backward()
        opt.step()
        topt.zero_grad()
        tl = _twin_losses(features, nets, X, y)
        tl.sum().backward()
        topt.step()
        torch.testing.assert_close(losses.detach(), tl.detach(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(model[0].weight, features[0].weight, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(model[0].bias, features[0].bias, rtol=1e-9, atol=1e-11)
    U, V, _, _ = R.packed_from_modules(nets)
    torch.testing.assert_close(model[2].U.detach(), torch.from_numpy(U), rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(model[2].V.detach(), torch.from_numpy(V), rtol=1e-9, atol=1e-11)
    assert (model[0].weight - first_layer).abs().max() > 1e-3        # the first layer did train


def test_linear_activation_and_squared_loss_module():
    m = pt.PackedMLP(WIDTHS, 6, 3, activation="linear", loss="squared", seed=4, dtype="float64")
    X = torch.randn(7, 6, dtype=torch.float64)
    Y = torch.randn(7, 3, dtype=torch.float64)
    W = (torch.rand(7, 3) > 0.3).double()
    losses = m.losses(X, Y, W)
    nets = R.modules_from_packed(m.U.detach(), m.V.detach(), m.offsets.numpy(), "linear", dtype=torch.float64)
    ref = torch.stack([R.squared_loss(n(X), Y, W) for n in nets])
    torch.testing.assert_close(losses.detach(), ref, rtol=1e-12, atol=1e-14)
    losses.sum().backward()
    ref.sum().backward()
    U, V, _, _ = R.packed_from_modules(nets)
    gU = torch.cat([n[0].weight.grad for n in nets])
    gV = torch.cat([n[2].weight.grad.T for n in nets])
    torch.testing.assert_close(m.U.grad, gU, rtol=1e-11, atol=1e-13)
    torch.testing.assert_close(m.V.grad, gV, rtol=1e-11, atol=1e-13)


# --------------------------------------------------------------------------- torch.compile
# inductor's own modules, when first imported, use torch.jit.script_method, which warns
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_compile_fullgraph_equals_eager():
    """A model holding the module compiles with fullgraph=True (a graph break would raise) and
    gives the eager outputs and gradients, through the forward op and the fused loss op."""
    torch._dynamo.reset()

    def build():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(12, 8), nn.ReLU(), pt.PackedMLP(WIDTHS, 8, 4, seed=3))

    def objective(model, X, y):
        out = model(X)
        return _network_losses(out, y).sum() + 0.5 * model[2].losses(model[:2](X), y).sum(), out

    eager, compiled = build(), build()
    step = torch.compile(objective, fullgraph=True)
    for seed in range(2):
        X, y = _data(B=10, seed=seed)
        le, oe = objective(eager, X, y)
        lc, oc = step(compiled, X, y)
        torch.testing.assert_close(oc, oe, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(lc, le, rtol=1e-6, atol=1e-6)
        le.backward()
        lc.backward()
        for (name, a), b in zip(eager.named_parameters(), compiled.parameters()):
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-5, atol=1e-6, msg=name)


def test_compiled_module_call_has_the_registered_ops_in_its_graph():
    torch._dynamo.reset()
    m = pt.PackedMLP(WIDTHS, 12, 4)
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward
    f = torch.compile(m, backend=backend, fullgraph=True)
    X, _ = _data()
    assert torch.equal(f(X), m(X))
    code = "\n".join(g.code for g in graphs)
    assert len(graphs) == 1 and "pyireg.packed_forward" in code


# --------------------------------------------------------------------------- fused step
def test_train_step_equals_the_numpy_api_and_the_autograd_path_bit_for_bit():
    """train_step (one native call) = MomentumSGD.step of the numpy API = losses() + backward +
    PackedSGD.step (loss_and_grad, then apply_update): all bit for bit, per-network values."""
    lr, mom, wd = torch.tensor([0.1, 0.2, 0.05, 0.3, 0.15]), torch.tensor([0.5, 0.0, 0.9, 0.1, 0.7]), 1e-3
    fused = pt.PackedMLP(WIDTHS, 12, 4, seed=5)
    autograd = copy.deepcopy(fused)
    numpy_model = pyireg.PackedMLP(WIDTHS, 12, 4, seed=5)
    numpy_opt = pyireg.MomentumSGD(numpy_model, lr=lr.numpy(), momentum=mom.numpy(), weight_decay=wd)
    opt_f = pt.PackedSGD(fused, lr=lr, momentum=mom, weight_decay=wd)
    opt_a = pt.PackedSGD(autograd, lr=lr, momentum=mom, weight_decay=wd)
    U0 = fused.U.data_ptr()
    for step in range(4):
        X, y = _data(seed=step)
        lf = fused.train_step(X, y, opt_f)
        ln = numpy_opt.step(X.numpy(), y.numpy())
        opt_a.zero_grad()
        la = autograd.losses(X, y)
        la.sum().backward()
        opt_a.step()
        assert np.array_equal(lf.numpy(), ln.astype(np.float32)) and torch.equal(lf, la.detach())
        assert not lf.requires_grad and fused.U.grad is None
    assert fused.U.data_ptr() == U0
    assert np.array_equal(fused.U.detach().numpy(), numpy_model.U) and torch.equal(fused.U, autograd.U)
    assert np.array_equal(fused.V.detach().numpy(), numpy_model.V) and torch.equal(fused.V, autograd.V)
    assert torch.equal(opt_f.state[fused.U]["momentum_buffer"], opt_a.state[autograd.U]["momentum_buffer"])
    # the buffers equal the numpy optimizer's; network 1 (momentum 0) has none in
    # torch.optim.SGD's semantics: its rows stay zero in both
    buf = opt_f.state[fused.V]["momentum_buffer"].numpy()
    with_momentum = np.repeat(mom.numpy() != 0, WIDTHS)
    assert np.array_equal(buf, numpy_opt.bufV)
    assert buf[with_momentum].any() and not buf[~with_momentum].any()


def test_train_step_squared_loss_with_weights():
    m = pt.PackedMLP(WIDTHS, 6, 3, loss="squared", seed=1)
    ref = pyireg.PackedMLP(WIDTHS, 6, 3, loss="squared", seed=1)
    opt, ropt = pt.PackedSGD(m, lr=0.1, momentum=0.5), pyireg.MomentumSGD(ref, lr=0.1, momentum=0.5)
    X, Y, W = torch.randn(9, 6), torch.randn(9, 3), (torch.rand(9, 3) > 0.5).float()
    for _ in range(2):
        assert np.array_equal(m.train_step(X, Y, opt, W).numpy(),
                              ropt.step(X.numpy(), Y.numpy(), W.numpy()).astype(np.float32))
    assert np.array_equal(m.U.detach().numpy(), ref.U)


def test_train_step_bad_inputs():
    m = pt.PackedMLP(WIDTHS, 12, 4)
    other = pt.PackedMLP(WIDTHS, 12, 4)
    X, y = _data()
    with pytest.raises(TypeError, match="optimizer: expected a pyireg.torch.PackedSGD or PackedOptimizer, got SGD"):
        m.train_step(X, y, torch.optim.SGD(m.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="optimizer: expected a PackedSGD holding the module's U and V"):
        m.train_step(X, y, pt.PackedSGD(other, lr=0.1))
    with pytest.raises(ValueError, match="X: requires grad, but train_step does not propagate"):
        m.train_step(X.requires_grad_(), y, pt.PackedSGD(m, lr=0.1))


def test_train_step_is_seen_by_schedulers_and_hooks():
    m = pt.PackedMLP(WIDTHS, 12, 4)
    opt = pt.PackedSGD(m, lr=0.1)
    calls = []
    opt.register_step_post_hook(lambda o, args, kwargs: calls.append(kwargs.get("fused") is not None))
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.5)
    X, y = _data()
    m.train_step(X, y, opt)
    sched.step()            # no "lr_scheduler.step() before optimizer.step()" warning (warnings are errors)
    assert calls == [True] and opt.param_groups[0]["lr"] == pytest.approx(0.05)


# --------------------------------------------------------------------------- state
def test_state_dict_pickle_deepcopy_double():
    m = pt.PackedMLP(WIDTHS, 12, 4, activation="linear", seed=9)
    X, _ = _data()
    sd = m.state_dict()
    assert set(sd) == {"U", "V", "_extra_state"}
    assert sd["_extra_state"] == {"widths": WIDTHS, "activation": "linear", "loss": "cross_entropy"}
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)
    fresh = pt.PackedMLP(WIDTHS, 12, 4, activation="linear", seed=0)
    ptr = fresh.U.data_ptr()
    fresh.load_state_dict(loaded)
    assert torch.equal(fresh(X), m(X)) and fresh.U.data_ptr() == ptr
    with pytest.raises(ValueError, match="state_dict: saved from a module of other widths .* differ at network 1"):
        pt.PackedMLP([1, 4, 1, 5, 8], 12, 4, activation="linear").load_state_dict(loaded)
    with pytest.raises(ValueError, match="state_dict: saved from a module with activation='linear'"):
        pt.PackedMLP(WIDTHS, 12, 4).load_state_dict(loaded)

    for other in (pickle.loads(pickle.dumps(m)), copy.deepcopy(m)):
        assert torch.equal(other(X), m(X)) and other.U.data_ptr() != m.U.data_ptr()
        opt = pt.PackedSGD([other.U, other.V], lr=torch.linspace(0.1, 0.5, 5))   # recognized as packed
        other(X).sum().backward()
        opt.step()

    assigned = pt.PackedMLP(WIDTHS, 12, 4, activation="linear")
    assigned.load_state_dict(loaded, assign=True)               # new parameter objects, still recognized
    assert assigned.U.data_ptr() != fresh.U.data_ptr() and torch.equal(assigned(X), m(X))
    pt.PackedSGD(assigned, lr=torch.linspace(0.1, 0.5, 5))

    d = copy.deepcopy(m).double()
    assert d.dtype == torch.float64 and d.offsets.dtype == torch.int64
    out = d(X)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out.float(), m(X), rtol=1e-5, atol=1e-6)
    assert np.shares_memory(d.to_numpy().U, d.U.detach().numpy())
    opt = pt.PackedSGD(d, lr=torch.linspace(0.1, 0.5, 5))     # the converted parameters are recognized
    d(X).sum().backward()
    opt.step()


def test_inputs_on_another_device_or_not_finite_are_refused():
    """A meta input to CPU weights would run no kernel at all, and NaN would spoil every
    network's weights: both are refused, as the numpy API refuses them."""
    p = pt.PackedMLP([1, 2, 4], 5, 3, seed=0)
    opt = pt.PackedSGD(p, lr=0.1)
    y = torch.randint(0, 3, (7,))
    meta = torch.empty(7, 5, device="meta")
    for call in (lambda: p(meta), lambda: p.losses(meta, y), lambda: p.train_step(meta, y, opt)):
        with pytest.raises(ValueError, match=r"X: expected a tensor on the weights' device \(cpu\), got one on meta"):
            call()
    X = torch.randn(7, 5)
    X[0, 0] = float("nan")
    U0 = p.U.detach().clone()
    for call in (lambda: p(X), lambda: p.train_step(X, y, opt)):
        with pytest.raises(ValueError, match=r"X: contains NaN or inf \(after conversion to float32\)"):
            call()
    with pytest.raises(ValueError, match="X: contains NaN or inf"):
        p(torch.full((7, 5), 1e39, dtype=torch.float64))
    assert torch.equal(p.U, U0)


def _inf_at(X, i, j):
    X = X.clone()
    X[i, j] = float("inf")
    return X


@pytest.mark.parametrize("make", [
    lambda: _inf_at(torch.randn(5, 7), 4, 6).t(),                       # strided (a transposed view)
    lambda: torch._neg_view(_inf_at(torch.randn(7, 5), 6, 4)),          # a negative view: -inf
    lambda: _inf_at(torch.randn(7, 10), 3, 8)[:, ::2],                  # every other column
    lambda: _inf_at(torch.randn(7, 5), 2, 1).requires_grad_(),          # a leaf that requires grad
    lambda: _inf_at(torch.randn(7, 5, dtype=torch.float64), 0, 0),      # converted to float32
], ids=["transposed", "neg-view", "column-stride", "requires-grad", "float64"])
def test_an_infinite_entry_is_found_in_any_layout(make):
    """The finiteness check reads X through a numpy view on the CPU: every layout a tensor can
    have reaches it, and one inf anywhere is refused before any weight changes."""
    p = pt.PackedMLP([1, 2, 4], 5, 3, seed=0)
    opt = pt.PackedSGD(p, lr=0.1)
    X, y, U0 = make(), torch.randint(0, 3, (7,)), p.U.detach().clone()
    assert X.shape == (7, 5)
    with pytest.raises(ValueError, match="X: contains NaN or inf"):
        p(X)
    with pytest.raises(ValueError, match="X: contains NaN or inf"):
        p.train_step(X.detach(), y, opt)
    assert torch.equal(p.U, U0)
    p(torch.nan_to_num(X.detach(), posinf=1.0, neginf=-1.0))      # the same layout, finite: accepted


def test_targets_are_checked_before_any_weight_changes():
    """Labels out of range are refused as given (an int64 2**32 + 1 is not wrapped to 1), NaN
    or inf targets and entry weights of the squared loss like NaN in X; a refused state dict
    of other widths leaves the weights alone; train_step refuses a frozen layer."""
    p = pt.PackedMLP([1, 2, 4], 5, 3, seed=0)
    opt = pt.PackedSGD(p, lr=0.1)
    X, U0 = torch.randn(7, 5), p.U.detach().clone()
    for bad in (2 ** 32 + 1, -1, 3):
        y = torch.zeros(7, dtype=torch.int64)
        y[4] = bad
        for call in (lambda: p.losses(X, y), lambda: p.train_step(X, y, opt)):
            with pytest.raises(ValueError, match=rf"y: expected labels in \[0, 3\), got {bad} at index 4"):
                call()
    sq = pt.PackedMLP([1, 2, 4], 5, 3, seed=0, loss="squared")
    sopt = pt.PackedSGD(sq, lr=0.1)
    S0 = sq.U.detach().clone()
    Y, W = torch.randn(7, 3), torch.ones(7, 3)
    for y, w, name in ((Y.clone().index_fill_(0, torch.tensor([2]), float("nan")), W, "y"),
                       (Y, W.clone().index_fill_(0, torch.tensor([6]), float("inf")), "weights"),
                       (Y.double().index_fill_(0, torch.tensor([0]), 1e39), W, "y")):
        for call in (lambda: sq.losses(X, y, w), lambda: sq.train_step(X, y, sopt, w)):
            with pytest.raises(ValueError, match=f"{name}: contains NaN or inf"):
                call()
    assert torch.equal(p.U, U0) and torch.equal(sq.U, S0)
    other = pt.PackedMLP([2, 1, 4], 5, 3, seed=1)
    with pytest.raises(ValueError, match=r"first differ at network 0 \(width 2 there, 1 here\)"):
        p.load_state_dict(other.state_dict())
    assert torch.equal(p.U, U0)
    p.U.requires_grad_(False)
    with pytest.raises(ValueError, match=r"U: frozen \(requires_grad=False\), but train_step updates both"):
        p.train_step(X, torch.zeros(7, dtype=torch.int64), opt)
    p.V.requires_grad_(False)
    V0 = p.V.detach().clone()
    with pytest.raises(ValueError, match=r"U and V: frozen \(requires_grad=False\), but train_step updates both"):
        p.train_step(X, torch.zeros(7, dtype=torch.int64), opt)
    assert torch.equal(p.U, U0) and torch.equal(p.V, V0)


def test_a_sparse_input_is_refused_naming_it():
    """p(X.to_sparse()) failed inside numpy ('can't convert Sparse layout tensor'), the raw
    operator with 'unsupported memory format option'."""
    p = pt.PackedMLP([1, 2], 4, 3, seed=0)
    X = torch.randn(5, 4)
    with pytest.raises(TypeError, match=r"X: expected a dense \(strided\) tensor"):
        p(X.to_sparse())
    with pytest.raises(TypeError, match=r"X: expected a dense \(strided\) tensor"):
        pt.packed_forward(p.U, p.V, X.to_sparse(), p.offsets)


def test_inputs_from_autocast_layers_are_converted():
    """Under torch.autocast a Linear before the module hands it bfloat16; it was refused
    ('expected a float32 or float64 tensor'). It is converted to the weights' dtype, as float64
    is, and gradients reach the layers before it."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(5, 4)
    p = pt.PackedMLP([2, 3], 4, 3, seed=0)
    X, y = torch.randn(6, 5), torch.tensor([0, 1, 2, 0, 1, 2])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = lin(X)
        assert h.dtype == torch.bfloat16
        losses = p.losses(h, y)
    assert losses.dtype == torch.float32
    losses.sum().backward()
    assert lin.weight.grad is not None and torch.isfinite(lin.weight.grad).all()
    want = p.losses(h.detach().float(), y)
    torch.testing.assert_close(losses.detach(), want.detach(), rtol=0, atol=0)


def test_bool_labels_are_classes_0_and_1_as_in_the_numpy_api():
    """The numpy API took bool labels (classes 0 and 1), pyireg.torch refused them."""
    p = pt.PackedMLP([1, 2], 4, 2, seed=0)
    X = torch.randn(6, 4)
    yb = torch.tensor([True, False, True, True, False, False])
    torch.testing.assert_close(p.losses(X, yb), p.losses(X, yb.long()), rtol=0, atol=0)
    np.testing.assert_array_equal(p.to_numpy().loss_and_grad(X.numpy(), yb.numpy())[0],
                                  p.to_numpy().loss_and_grad(X.numpy(), yb.long().numpy())[0])
