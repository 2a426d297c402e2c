"""pyireg.torch's custom operators: registration (opcheck), gradients (gradcheck in float64 for U,
V and X), agreement with the numpy API bit for bit, the eager fast path against the registered
operators, the engine cache, and bad inputs."""
import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import pyireg
import pyireg.torch as pt
from pyireg.torch import _ops

WIDTHS = [1, 3, 2, 5]


@pytest.fixture(autouse=True)
def _one_native_thread():
    """These tests make hundreds of tiny native calls (gradcheck); one thread spares them the
    parallel regions' start-up on a busy machine. Results do not depend on the thread count
    (tests/test_threads.py); conftest restores the setting."""
    pyireg.set_num_threads(1)


def _setup(dtype=torch.float64, d=5, k=3, B=4, activation="relu", loss="cross_entropy", seed=0, grad=True):
    m = pyireg.PackedMLP(WIDTHS, d, k, activation=activation, loss=loss, seed=seed,
                         dtype=str(dtype).replace("torch.", ""))
    g = torch.Generator().manual_seed(seed)
    U = torch.from_numpy(m.U.copy()).requires_grad_(grad)
    V = torch.from_numpy(m.V.copy()).requires_grad_(grad)
    X = torch.randn(B, d, dtype=dtype, generator=g).requires_grad_(grad)
    off = torch.from_numpy(m.offsets.copy())
    if loss == "cross_entropy":
        y = torch.randint(0, k, (B,), generator=g)
    else:
        y = torch.randn(B, k, dtype=dtype, generator=g)
    return m, U, V, X, off, y


class _PassThrough(TorchDispatchMode):
    """A dispatch mode that changes nothing: under it the entry points use the registered
    operators instead of the eager fast path."""

    def __init__(self):
        super().__init__()
        self.ops = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(str(func))
        return func(*args, **(kwargs or {}))


# --------------------------------------------------------------------------- opcheck
@pytest.mark.parametrize("activation, loss", [("relu", "cross_entropy"), ("linear", "squared")])
def test_opcheck_forward_backward_loss(activation, loss):
    _, U, V, X, off, y = _setup(activation=activation, loss=loss)
    G = torch.randn(len(WIDTHS), X.shape[0], V.shape[1], dtype=U.dtype)
    torch.library.opcheck(_ops.packed_forward_op, (U, V, X, off, activation, loss))
    torch.library.opcheck(_ops.packed_backward_op, (G, U.detach(), V.detach(), X.detach(), off, activation, loss,
                                                    True, False, True))
    t, w = _ops.targets(y, None if loss == "cross_entropy" else torch.rand(y.shape, dtype=U.dtype),
                        X.shape[0], loss, U.dtype)
    for with_grad in (True, False):
        torch.library.opcheck(_ops.packed_loss_op, (U, V, X, t, w, off, activation, loss, with_grad))


def test_opcheck_in_place_ops():
    _, U, V, X, off, y = _setup(grad=False)
    N = len(WIDTHS)
    hyper = [torch.tensor(v, dtype=U.dtype) for v in ([0.1, 0.2, 0.0, 0.3], [0.5, 0.0, 0.9, 0.1], [0, 1e-3, 0, 1e-2])]
    sU, sV = torch.rand_like(U), torch.rand_like(V)
    torch.library.opcheck(_ops.packed_step_op, (U.clone(), V.clone(), X, y.int(), None, off, "relu", "cross_entropy",
                                                sU.clone(), sV.clone(), *hyper))
    torch.library.opcheck(_ops.packed_apply_update_op, (U.clone(), V.clone(), torch.randn_like(U), torch.randn_like(V),
                                                        off, sU.clone(), sV.clone(), *hyper))
    assert N == 4


# --------------------------------------------------------------------------- gradcheck
@pytest.mark.parametrize("activation", ["relu", "linear"])
def test_gradcheck_forward(activation):
    _, U, V, X, off, _ = _setup(activation=activation)
    assert torch.autograd.gradcheck(lambda U, V, X: pt.packed_forward(U, V, X, off, activation), (U, V, X))


def test_gradcheck_forward_registered_op():
    """The same through the registered operator's autograd formula (what torch.compile uses)."""
    _, U, V, X, off, _ = _setup()
    with _PassThrough() as mode:
        assert torch.autograd.gradcheck(lambda U, V, X: pt.packed_forward(U, V, X, off), (U, V, X))
    assert "pyireg.packed_forward.default" in mode.ops and "pyireg.packed_backward.default" in mode.ops


@pytest.mark.parametrize("loss", ["cross_entropy", "squared"])
@pytest.mark.parametrize("registered", [False, True])
def test_gradcheck_loss(loss, registered):
    """gradcheck differentiates each output separately with retain_graph: the first backward uses
    the fused gradients (scaled by a one-hot upstream gradient), the later ones recompute them."""
    _, U, V, X, off, y = _setup(loss=loss)
    w = None if loss == "cross_entropy" else torch.rand(y.shape, dtype=U.dtype)
    f = lambda U, V, X: pt.packed_loss(U, V, X, y, off, weights=w, loss=loss)  # noqa: E731
    if registered:
        with _PassThrough() as mode:
            assert torch.autograd.gradcheck(f, (U, V, X))
        assert "pyireg.packed_loss.default" in mode.ops
    else:
        assert torch.autograd.gradcheck(f, (U, V, X))


@pytest.mark.parametrize("which", ["U", "V", "X"])
def test_gradcheck_loss_one_input(which):
    """Only one input requiring a gradient (a frozen packed model under a trainable input, or the
    converse): the loss-only kernel plus the recomputed gradient, or the fused one."""
    _, U, V, X, off, y = _setup(grad=False)
    args = {"U": U, "V": V, "X": X}
    args[which] = args[which].clone().requires_grad_(True)

    def f(t):
        a = dict(args, **{which: t})
        return pt.packed_loss(a["U"], a["V"], a["X"], y, off)
    assert torch.autograd.gradcheck(f, (args[which],))


# --------------------------------------------------------------------------- the numpy API, bit for bit
def test_ops_equal_the_numpy_api_float32():
    m, U, V, X, off, y = _setup(dtype=torch.float32, d=7, k=4, B=9)
    Xn = X.detach().numpy()
    out = pt.packed_forward(U, V, X, off)
    assert np.array_equal(out.detach().numpy(), m.forward(Xn))
    G = torch.randn(out.shape)
    gU, gV, gX = torch.autograd.grad(out, (U, V, X), G)
    rU, rV, rX = m.backward(Xn, G.numpy())
    assert np.array_equal(gU.numpy(), rU) and np.array_equal(gV.numpy(), rV) and np.array_equal(gX.numpy(), rX)
    losses = pt.packed_loss(U, V, X.detach(), y, off)
    ref_loss, ref_gU, ref_gV = m.loss_and_grad(Xn, y.numpy())
    assert np.array_equal(losses.detach().numpy(), ref_loss.astype(np.float32))
    gU, gV = torch.autograd.grad(losses.sum(), (U, V))
    assert np.array_equal(gU.numpy(), ref_gU) and np.array_equal(gV.numpy(), ref_gV)


def test_loss_without_gradients_is_the_same_loss():
    """Under no_grad (or with nothing requiring a gradient) only the loss is computed (the
    engine's evaluate): the same numbers as the fused loss-and-gradient pass."""
    _, U, V, X, off, y = _setup(dtype=torch.float32, B=300)
    fused = pt.packed_loss(U, V, X.detach(), y, off)
    with torch.no_grad():
        alone = pt.packed_loss(U, V, X, y, off)
    assert fused.requires_grad and not alone.requires_grad
    assert torch.equal(fused.detach(), alone)


def test_loss_gradient_scales_each_network():
    _, U, V, X, off, y = _setup()
    scale = torch.tensor([0.5, -2.0, 0.0, 3.0], dtype=U.dtype)
    losses = pt.packed_loss(U, V, X.detach(), y, off)
    gU, gV = torch.autograd.grad(losses, (U, V), scale)
    one = pt.packed_loss(U, V, X.detach(), y, off)
    oU, oV = torch.autograd.grad(one.sum(), (U, V))
    rows = torch.repeat_interleave(scale, off.diff()).unsqueeze(1)
    assert torch.equal(gU, oU * rows) and torch.equal(gV, oV * rows)


def test_loss_retain_graph_second_backward_is_the_same():
    _, U, V, X, off, y = _setup()
    losses = pt.packed_loss(U, V, X, y, off)
    g = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=U.dtype)
    first = torch.autograd.grad(losses, (U, V, X), g, retain_graph=True)
    second = torch.autograd.grad(losses, (U, V, X), g)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def _plain_outputs(U, V, X, off, activation="relu"):
    """Plain torch, one network at a time (slices of U and V): the twin of packed_forward."""
    act = torch.relu if activation == "relu" else (lambda z: z)
    return torch.stack([act(X @ U[a:b].T) @ V[a:b] for a, b in zip(off[:-1].tolist(), off[1:].tolist())])


def _plain_losses(U, V, X, y, off):
    out = _plain_outputs(U, V, X, off)
    return torch.stack([torch.nn.functional.cross_entropy(o, y) for o in out])


@pytest.mark.parametrize("registered", [False, True])
@pytest.mark.parametrize("op", ["forward", "loss"])
def test_second_derivatives_equal_plain_torch(op, registered):
    """With create_graph=True the gradients are differentiable (the composite path): a
    Hessian-vector product in U, V and X equals plain torch's, on both paths."""
    _, U, V, X, off, y = _setup()
    g = torch.Generator().manual_seed(5)
    vU, vV, vX = (torch.randn(t.shape, dtype=t.dtype, generator=g) for t in (U, V, X))

    def hvp(f):
        gU, gV, gX = torch.autograd.grad(f(), (U, V, X), create_graph=True)
        assert gU.requires_grad and gV.requires_grad and gX.requires_grad
        return torch.autograd.grad((gU * vU).sum() + (gV * vV).sum() + (gX * vX).sum(), (U, V, X))

    plain = hvp((lambda: _plain_outputs(U, V, X, off).square().sum()) if op == "forward"
                else (lambda: _plain_losses(U, V, X, y, off).sum()))
    mode = _PassThrough() if registered else None
    if mode:
        mode.__enter__()
    try:
        ours = hvp((lambda: pt.packed_forward(U, V, X, off).square().sum()) if op == "forward"
                   else (lambda: pt.packed_loss(U, V, X, y, off).sum()))
    finally:
        if mode:
            mode.__exit__(None, None, None)
    if registered:
        assert f"pyireg.packed_{op}.default" in mode.ops
    for a, b in zip(ours, plain):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_step_ops_equal_the_numpy_optimizer_bit_for_bit():
    m, U, V, X, off, y = _setup(dtype=torch.float32, grad=False, B=8)
    N = len(WIDTHS)
    lr, mom, wd = np.array([0.1, 0.2, 0.05, 0.3]), np.array([0.5, 0.0, 0.9, 0.1]), np.array([0, 1e-3, 0, 1e-2])
    opt = pyireg.MomentumSGD(m, lr=lr, momentum=mom, weight_decay=wd)
    sU, sV = torch.zeros_like(U), torch.zeros_like(V)
    h = [torch.tensor(v, dtype=torch.float32) for v in (lr, mom, wd)]
    ptrs = (U.data_ptr(), V.data_ptr(), sU.data_ptr(), sV.data_ptr())
    versions = (U._version, sU._version)
    for _ in range(3):
        ref = opt.step(X.numpy(), y.numpy())
        got = pt.packed_step(U, V, X, y, off, sU, sV, *h)
        assert got.dtype == torch.float32 and got.shape == (N,)
        assert np.array_equal(got.numpy(), ref.astype(np.float32))
    assert np.array_equal(U.numpy(), m.U) and np.array_equal(V.numpy(), m.V)
    assert np.array_equal(sU.numpy(), opt.bufU) and np.array_equal(sV.numpy(), opt.bufV)
    assert (U.data_ptr(), V.data_ptr(), sU.data_ptr(), sV.data_ptr()) == ptrs          # in place
    assert U._version > versions[0] and sU._version > versions[1]                      # autograd sees it
    # the unfused update from the same gradients
    loss, gU, gV = m.loss_and_grad(X.numpy(), y.numpy())
    opt.apply_update(gU, gV)
    pt.packed_apply_update(U, V, torch.from_numpy(gU), torch.from_numpy(gV), off, sU, sV, *h)
    assert np.array_equal(U.numpy(), m.U) and np.array_equal(sV.numpy(), opt.bufV)


def test_registered_ops_equal_the_fast_path():
    """Eager calls skip the dispatcher (their kernels directly); under a dispatch mode the
    registered operators run. Same numbers, bit for bit, forward, backward, losses and steps."""
    _, U, V, X, off, y = _setup(dtype=torch.float32, B=6)

    def run():
        U1, V1, X1 = (t.detach().clone().requires_grad_(True) for t in (U, V, X))
        out = pt.packed_forward(U1, V1, X1, off)
        g1 = torch.autograd.grad(out.square().sum(), (U1, V1, X1))
        losses = pt.packed_loss(U1, V1, X1, y, off)
        g2 = torch.autograd.grad((losses * torch.arange(1.0, 5.0)).sum(), (U1, V1, X1))
        U2, V2 = U.detach().clone(), V.detach().clone()
        sU, sV = torch.zeros_like(U2), torch.zeros_like(V2)
        h = [torch.full((4,), v) for v in (0.1, 0.5, 1e-3)]
        step = pt.packed_step(U2, V2, X.detach(), y, off, sU, sV, *h)
        pt.packed_apply_update(U2, V2, g2[0], g2[1], off, sU, sV, *h)
        return [out, *g1, losses, *g2, step, U2, V2, sU, sV]

    fast = run()
    with _PassThrough() as mode:
        slow = run()
    assert {"pyireg.packed_forward.default", "pyireg.packed_loss.default", "pyireg.packed_step.default",
            "pyireg.packed_apply_update.default"} <= mode.ops
    for a, b in zip(fast, slow):
        assert torch.equal(a.detach(), b.detach())


def test_inputs_of_any_stride():
    _, U, V, X, off, y = _setup(B=6)
    big = torch.randn(12, 2 * X.shape[1], dtype=U.dtype)
    Xs = big[::2, ::2]                                       # strided, not contiguous
    assert not Xs.is_contiguous()
    Xt = torch.randn(X.shape[1], 6, dtype=U.dtype).T           # transposed
    for Xn in (Xs, Xt):
        out = pt.packed_forward(U, V, Xn, off)
        ref = pt.packed_forward(U, V, Xn.contiguous(), off)
        assert torch.equal(out, ref)
    Ut = U.detach().T.contiguous().T                          # non-contiguous weights: read-only ops copy
    assert torch.equal(pt.packed_forward(Ut, V, X, off), pt.packed_forward(U, V, X, off))


def test_empty_batch_forward():
    _, U, V, X, off, _ = _setup()
    out = pt.packed_forward(U, V, X[:0], off)
    assert out.shape == (len(WIDTHS), 0, V.shape[1])
    out.sum().backward()
    assert torch.equal(U.grad, torch.zeros_like(U))


# --------------------------------------------------------------------------- engine cache
def test_engine_cache_is_bounded_and_shared():
    pt.clear_engine_cache()
    _, U, V, X, off, _ = _setup(grad=False)
    pt.packed_forward(U, V, X, off)
    pt.packed_forward(U, V, X, off.clone())                   # same layout, another tensor: a hit
    info = pt.engine_cache_info()
    assert (info["size"], info["misses"], info["hits"]) == (1, 1, 1)
    pt.packed_forward(U, V, X, off, "linear")                 # another activation: another engine
    assert pt.engine_cache_info()["size"] == 2
    try:
        pt.set_engine_cache_size(3)
        for n in range(1, 6):                                 # five more layouts of the same S
            pt.packed_forward(U, V, X, torch.tensor([0, n, 11]))
        info = pt.engine_cache_info()
        assert info["size"] == 3 and info["evictions"] == 4 and info["workspace_bytes"] > 0
        pt.packed_forward(U, V, X, off)                       # evicted: rebuilt, same result
        assert pt.engine_cache_info()["misses"] == info["misses"] + 1
    finally:
        pt.set_engine_cache_size(16)
    with pytest.raises(ValueError, match="maxsize: expected a positive integer"):
        pt.set_engine_cache_size(0)


def test_gradient_memory_is_reused_only_when_free():
    """Large gradients come from a pool: a training loop that drops its gradients (zero_grad)
    gets the same memory back each step; a gradient still referred to, or a view of it, is
    never handed out again."""
    pt.clear_engine_cache()
    m = pt.PackedMLP([700, 700], 200, 3, dtype=torch.float64)        # gU is 2.2 MB
    X, y = torch.randn(8, 200, dtype=torch.float64), torch.randint(0, 3, (8,))
    m.losses(X, y).sum().backward()
    first = m.U.grad.data_ptr()
    m.U.grad = None
    m.losses(X, y).sum().backward()
    assert m.U.grad.data_ptr() == first                        # reused
    kept = m.U.grad[10:20]                                     # a view keeps the memory in use
    value = kept.clone()
    m.U.grad = None
    m(X).sum().backward()
    assert m.U.grad.data_ptr() != first
    assert torch.equal(kept, value)                            # not overwritten
    assert pt.engine_cache_info()["gradient_pool_bytes"] >= 2 * m.U.numel() * 8
    del kept
    pt.clear_engine_cache()
    assert pt.engine_cache_info()["gradient_pool_bytes"] == 0


def test_cached_engine_used_from_threads():
    """Engines are shared by every caller of a layout; the engine's lock lets concurrent reads
    and the results equal serial ones."""
    from concurrent.futures import ThreadPoolExecutor
    _, U, V, X, off, _ = _setup(dtype=torch.float32, B=64, grad=False)
    ref = pt.packed_forward(U, V, X, off)
    with ThreadPoolExecutor(4) as ex:
        outs = list(ex.map(lambda _: pt.packed_forward(U, V, X, off), range(16)))
    assert all(torch.equal(o, ref) for o in outs)


# --------------------------------------------------------------------------- bad inputs
def test_bad_inputs_name_the_argument():
    _, U, V, X, off, y = _setup(grad=False)
    cases = [
        (lambda: pt.packed_forward(U, V, X.float(), off), TypeError, "X: expected torch.float64 like U"),
        (lambda: pt.packed_forward(U, V.float(), X, off), TypeError, "V: expected torch.float64 like U"),
        (lambda: pt.packed_forward(U.half(), V, X, off), TypeError, "U: expected a float32 or float64"),
        (lambda: pt.packed_forward(U, V, X[:, :3], off), ValueError, r"X: expected shape \(\*, 5\)"),
        (lambda: pt.packed_forward(U, V[:-1], X, off), ValueError, "U, V: expected 2-d tensors"),
        (lambda: pt.packed_forward(U, V, X, off.int()), ValueError, "offsets: expected a 1-d int64"),
        (lambda: pt.packed_forward(U, V, X, [0, 1, 11]), TypeError, "offsets: expected an int64 tensor"),
        (lambda: pt.packed_forward(U, V, X, off, "tanh"), ValueError, "activation: expected 'relu' or 'linear'"),
        (lambda: pt.packed_forward(U, V, X, off, loss="hinge"), ValueError, "loss: expected 'cross_entropy'"),
        (lambda: pt.packed_forward(U, V, X, torch.tensor([0, 5, 4, 11])), ValueError, "offsets: expected strictly"),
        (lambda: pt.packed_forward(U, V, X, torch.tensor([0, 5, 12])), ValueError,
         r"U, V: expected 12 rows \(offsets\[-1\]\), got 11"),
        (lambda: pt.packed_loss(U, V, X, y.float(), off), TypeError, "y: expected integer class labels"),
        (lambda: pt.packed_loss(U, V, X, y + 10, off), ValueError, r"y: expected labels in \[0, 3\)"),
        (lambda: pt.packed_loss(U, V, X, y[:2], off), ValueError, r"y: expected shape \(4,\)"),
        (lambda: pt.packed_loss(U, V, X, y, off, weights=torch.ones(4, 3)), ValueError,
         "weights: entry weights apply to the squared loss only"),
        (lambda: pt.packed_loss(U, V, X, torch.zeros(4, 3), off, loss="squared", weights=-torch.ones(4, 3)),
         ValueError, "weights: expected non-negative"),
        (lambda: pt.packed_loss(U, V, X, y.double(), off, loss="squared"), ValueError, r"y: expected shape \(4, 3\)"),
        (lambda: pt.packed_loss(U, V, X, torch.zeros(4, 3, dtype=U.dtype, requires_grad=True), off, loss="squared"),
         ValueError, "y, weights: gradients with respect to the targets"),
    ]
    for fn, exc, match in cases:
        with pytest.raises(exc, match=match):
            fn()


def test_bad_step_inputs():
    _, U, V, X, off, y = _setup(grad=False)
    sU, sV = torch.zeros_like(U), torch.zeros_like(V)
    h = [torch.full((4,), v, dtype=U.dtype) for v in (0.1, 0.5, 0.0)]
    with pytest.raises(ValueError, match=r"lr: expected shape \(4,\)"):
        pt.packed_step(U, V, X, y, off, sU, sV, h[0][:3], h[1], h[2])
    with pytest.raises(ValueError, match="momentum: expected values in"):
        pt.packed_step(U, V, X, y, off, sU, sV, h[0], torch.ones(4, dtype=U.dtype), h[2])
    with pytest.raises(ValueError, match="state_V: expected shape"):
        pt.packed_step(U, V, X, y, off, sU, sV[:3], *h)
    Ut = U.T.contiguous().T
    with pytest.raises(ValueError, match="U: expected a contiguous tensor"):
        pt.packed_step(Ut, V, X, y, off, sU, sV, *h)
    with pytest.raises(TypeError, match=r"gU: expected a dense \(strided\) tensor"):
        pt.packed_apply_update(U, V, U.to_sparse(), V, off, sU, sV, *h)


def test_a_cuda_tensor_says_the_cuda_backend_is_not_built():
    """No CUDA device here: the check is given a tensor-like object on a CUDA device."""
    assert pyireg._core.build_config()["cuda"] is False

    class OnCuda:
        device = torch.device("cuda", 0)
    with pytest.raises(RuntimeError, match=r"X: got a CUDA tensor \(cuda:0\), but the CUDA backend of pyireg is "
                                           r"not built \(pyireg._core.build_config\(\)\['cuda'\] is False\)"):
        _ops.check_device(OnCuda(), "X")

    class OnXla:
        device = torch.device("xla")
    with pytest.raises(RuntimeError, match="U: expected a CPU tensor, got one on xla"):
        _ops.check_device(OnXla(), "U")


def test_meta_tensors_run_the_fake_kernels():
    _, U, V, X, off, y = _setup(grad=False)
    Um, Vm, Xm, om = (t.to("meta") for t in (U, V, X, off))
    out = torch.ops.pyireg.packed_forward(Um, Vm, Xm, om)
    assert out.device.type == "meta" and out.shape == (4, 4, 3)
    loss, gU, gV = torch.ops.pyireg.packed_loss(Um, Vm, Xm, y.int().to("meta"), None, om)
    assert loss.shape == (4,) and gU.shape == U.shape and gV.shape == V.shape


def test_import_pyireg_does_not_import_torch():
    import pathlib
    import subprocess
    import sys
    code = "import sys, pyireg; assert 'torch' not in sys.modules; import pyireg.torch; assert 'torch' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=pathlib.Path(__file__).resolve().parents[1])


# --------------------------------------------------------------------------- raw operators: devices, layouts
def _raw_calls(U, V, X, off, y, G):
    """Every raw operator with a full argument list."""
    N = off.shape[0] - 1
    hyper = [torch.full((N,), v, dtype=U.dtype) for v in (0.1, 0.5, 0.0)]
    sU, sV = torch.zeros_like(U), torch.zeros_like(V)
    return {
        "packed_forward": lambda: torch.ops.pyireg.packed_forward(U, V, X, off),
        "packed_backward": lambda: torch.ops.pyireg.packed_backward(G, U, V, X, off),
        "packed_loss": lambda: torch.ops.pyireg.packed_loss(U, V, X, y, None, off),
        "packed_step": lambda: torch.ops.pyireg.packed_step(U, V, X, y, None, off, "relu", "cross_entropy", sU, sV,
                                                            *hyper),
        "packed_apply_update": lambda: torch.ops.pyireg.packed_apply_update(U, V, U.clone(), V.clone(), off, sU, sV,
                                                                            *hyper),
    }


@pytest.mark.parametrize("which", ["U", "X", "offsets", "y"])
def test_raw_operators_refuse_a_meta_tensor_among_cpu_tensors(which):
    """The dispatcher sends such a call to the fake kernel, whose outputs are uninitialized
    memory (and a step that changes nothing): refused with the devices named."""
    _, U, V, X, off, y = _setup(grad=False)
    G = torch.randn(len(WIDTHS), X.shape[0], V.shape[1], dtype=U.dtype)
    y = y.int()
    args = {"U": U, "X": X, "offsets": off, "y": y}
    args[which] = args[which].to("meta")
    calls = _raw_calls(args["U"], V, args["X"], args["offsets"], args["y"], G)
    if which == "y":
        calls = {k: calls[k] for k in ("packed_loss", "packed_step")}
    if which == "X":
        calls.pop("packed_apply_update")
    for name, call in calls.items():
        U0 = U.clone()
        with pytest.raises(RuntimeError, match=f"pyireg::{name}: expected every tensor on one device, got .*meta"):
            call()
        assert torch.equal(U, U0)


@pytest.mark.parametrize("bad", ["float", "decreasing", "too_few_units", "not_from_zero"])
def test_raw_operators_check_the_layout_on_an_empty_batch(bad):
    """With B == 0 no native call checks anything: the layout is checked first all the same."""
    _, U, V, X, off, y = _setup(grad=False)
    X0 = X[:0]
    G0 = torch.zeros(len(WIDTHS), 0, V.shape[1], dtype=U.dtype)
    offsets = {"float": off.double(), "decreasing": torch.tensor([0, 5, 4, 11]),
               "too_few_units": torch.tensor([0, 1, 4, 6, 10]), "not_from_zero": torch.tensor([1, 2, 5, 7, 11])}[bad]
    match = {"float": "offsets: expected a 1-d int64", "decreasing": "offsets: expected strictly increasing",
             "too_few_units": r"U, V: expected 10 rows", "not_from_zero": r"offsets: expected offsets\[0\] == 0"}[bad]
    for call in (lambda: torch.ops.pyireg.packed_forward(U, V, X0, offsets),
                 lambda: torch.ops.pyireg.packed_backward(G0[:offsets.shape[0] - 1], U, V, X0, offsets),
                 lambda: torch.ops.pyireg.packed_loss(U, V, X0, y[:0].int(), None, offsets)):
        with pytest.raises((ValueError, TypeError), match=match):
            call()


def test_raw_operators_on_an_empty_batch_with_a_good_layout():
    _, U, V, X, off, y = _setup(grad=False)
    out = torch.ops.pyireg.packed_forward(U, V, X[:0], off)
    assert out.shape == (len(WIDTHS), 0, V.shape[1])
    gU, gV, gX = torch.ops.pyireg.packed_backward(out, U, V, X[:0], off)
    assert torch.equal(gU, torch.zeros_like(U)) and torch.equal(gV, torch.zeros_like(V)) and gX.shape == (0, 5)


def test_a_step_refuses_state_that_shares_memory_with_the_weights():
    """A state the step writes in place that is the weights (or overlaps another state) would
    make the update read what it writes: refused before anything is written."""
    p = pt.PackedMLP([1, 2, 4], 5, 3, seed=0)
    X, y = torch.randn(7, 5), torch.randint(0, 3, (7,))
    N = p.num_networks
    hyper = (torch.full((N,), 0.1), torch.full((N,), 0.9), torch.zeros(N))
    U, V = p.U.detach(), p.V.detach()
    U0, base = U.clone(), torch.zeros(56)                      # two overlapping views of one buffer
    for sU, sV, match in ((U, torch.zeros_like(V), "state_U: shares memory with U"),
                          (torch.zeros_like(U), V, "state_V: shares memory with V"),
                          (base[:35].view(7, 5), base[30:51].view(7, 3), "state_V: shares memory with state_U")):
        with pytest.raises(ValueError, match=match):
            pt.packed_step(U, V, X, y, p.offsets, sU, sV, *hyper)
        with pytest.raises(ValueError, match=match):
            pt.packed_apply_update(U, V, torch.zeros_like(U), torch.zeros_like(V), p.offsets, sU, sV, *hyper)
    assert torch.equal(U, U0)


@pytest.mark.parametrize("dtype", [torch.int64, torch.uint64])
def test_labels_beyond_int32_are_refused_outside_eager_mode_too(dtype):
    """Under torch.compile (no eager range check runs) a label of 2**32 + 1 wrapped to 1 in the
    int32 form and trained silently; it is now refused there as in eager mode."""
    m = pt.PackedMLP([1, 2, 3], 4, 3, seed=0)
    X = torch.randn(5, 4)
    y = torch.tensor([0, 1, 2, 0, 2**32 + 1]).to(dtype)
    f = torch.compile(lambda X, y: m.losses(X, y), backend="eager", fullgraph=True)
    for run in (f, m.losses):
        with pytest.raises(ValueError, match=r"y: expected labels in \[0, 3\), got (-1|4294967297) at index 4"):
            run(X, y)
    ok = torch.tensor([0, 1, 2, 0, 2]).to(dtype)
    torch.testing.assert_close(f(X, ok), m.losses(X, ok.long()), rtol=0, atol=0)


def test_the_registered_step_refuses_state_that_is_the_weights():
    """torch.ops.pyireg.packed_step called directly (no checked entry point) with the weights as
    their own momentum buffers ran silently; the kernels (through the engine's binding) refuse."""
    m = pt.PackedMLP([2, 3], 4, 3, seed=0)
    U, V = m.U.detach(), m.V.detach()
    X, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1], dtype=torch.int32)
    h = [torch.full((2,), v) for v in (0.1, 0.9, 0.0)]
    before = U.clone()
    with pytest.raises(ValueError, match="state_U: shares memory with U"):
        torch.ops.pyireg.packed_step(U, V, X, y, None, m.offsets, "relu", "cross_entropy", U, V, *h)
    with pytest.raises(ValueError, match="scale_U: shares memory with U|kU: shares memory with U"):
        pt.packed_ddp_scale(U, V, X, m.offsets, torch.full((2,), 0.5), U, V)
    assert torch.equal(U, before)
