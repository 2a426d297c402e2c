"""pyireg.torch on the CUDA engine, run through the emulation: inside ``pyireg.cuda.emulate()``
the operators on CPU tensors run the CUDA kernels (counted launches prove it); opcheck and
gradcheck there; the module's fused train_step against the CPU kernels under the tolerance rule.
Real CUDA tensors are covered by the ``cuda``-marked test, which needs a GPU and pyireg._cuda."""
import warnings

import numpy as np
import pytest
import torch

import pyireg
import pyireg.cuda as pc
from pyireg import reference as ref

pt = pytest.importorskip("pyireg.torch")
pytest.importorskip("pyireg.torch._devices")  # the per-device kernel registry, which _kernels_cuda joins
_ops = pytest.importorskip("pyireg.torch._ops")

WIDTHS = [1, 3, 2, 6]


def _setup(dtype=torch.float64, d=5, k=3, B=4, loss="cross_entropy", seed=0):
    m = pyireg.PackedMLP(WIDTHS, d, k, loss=loss, seed=seed, dtype=str(dtype).replace("torch.", ""))
    g = torch.Generator().manual_seed(seed)
    U = torch.from_numpy(m.U.copy()).requires_grad_(True)
    V = torch.from_numpy(m.V.copy()).requires_grad_(True)
    X = torch.randn(B, d, dtype=dtype, generator=g).requires_grad_(True)
    off = torch.from_numpy(m.offsets.copy())
    y = torch.randint(0, k, (B,), generator=g) if loss == "cross_entropy" else torch.randn(B, k, dtype=dtype,
                                                                                          generator=g)
    return U, V, X, off, y


@pytest.mark.parametrize("loss", ["cross_entropy", "squared"])
def test_opcheck_on_the_emulated_engine(loss):
    U, V, X, off, y = _setup(loss=loss)
    G = torch.randn(len(WIDTHS), X.shape[0], V.shape[1], dtype=U.dtype)
    with pc.emulate() as em:
        torch.library.opcheck(_ops.packed_forward_op, (U, V, X, off, "relu", loss))
        torch.library.opcheck(_ops.packed_backward_op, (G, U.detach(), V.detach(), X.detach(), off, "relu", loss,
                                                        True, True, True))
        torch.library.opcheck(_ops.packed_loss_op, (U, V, X, y, None, off, "relu", loss, True))
    assert em.launches > 0


def test_gradcheck_on_the_emulated_engine():
    U, V, X, off, y = _setup()
    with pc.emulate() as em:
        assert torch.autograd.gradcheck(lambda u, v, x: pt.packed_forward(u, v, x, off), (U, V, X))
        assert torch.autograd.gradcheck(lambda u, v, x: pt.packed_loss(u, v, x, y, off), (U, V, X))
    assert em.launches > 0


def test_operators_inside_emulate_run_the_cuda_kernels():
    U, V, X, off, _y = _setup(dtype=torch.float32)
    with torch.no_grad(), pc.emulate() as em:
        out = pt.packed_forward(U, V, X, off)
    assert em.launches == 1  # the second layer (the GEMM is a cuBLAS call, not a launch)
    e = pc.Engine(off.numpy(), U.shape[1], V.shape[1])
    with pc.emulate():
        np.testing.assert_array_equal(out.numpy(), e.forward(U.detach().numpy(), V.detach().numpy(),
                                                             X.detach().numpy()))
    u, v, x = U.detach().numpy(), V.detach().numpy(), X.detach().numpy()
    r32 = ref.forward(ref.modules_from_packed(u, v, off.numpy(), dtype=torch.float32), x).numpy()
    r64 = ref.forward(ref.modules_from_packed(u, v, off.numpy(), dtype=torch.float64), x.astype(np.float64)).numpy()
    pyireg.testing.assert_tolerance(out.numpy(), r32, r64, "forward")


def test_train_step_on_the_emulated_engine_matches_the_cpu():
    torch.manual_seed(0)
    X = torch.randn(16, 7)
    y = torch.randint(0, 4, (16,))
    models, losses = [], []
    for emulated in (False, True):
        m = pt.PackedMLP(WIDTHS, 7, 4, seed=3)
        opt = pt.PackedSGD(m, lr=0.1, momentum=0.9, weight_decay=1e-3)
        with pc.emulate() if emulated else torch.no_grad() as ctx:
            ls = [m.train_step(X, y, opt) for _ in range(3)]
        if emulated:
            assert ctx.launches >= 3 * 6
        models.append(m)
        losses.append(torch.stack(ls))
    m64 = pt.PackedMLP(WIDTHS, 7, 4, seed=3, dtype="float64")
    opt64 = pt.PackedSGD(m64, lr=0.1, momentum=0.9, weight_decay=1e-3)
    l64 = torch.stack([m64.train_step(X.double(), y, opt64) for _ in range(3)])
    pyireg.testing.assert_tolerance(losses[1].numpy(), losses[0].numpy(), l64.numpy(), "losses")
    pyireg.testing.assert_tolerance(models[1].U.detach().numpy(), models[0].U.detach().numpy(),
                                    m64.U.detach().numpy(), "U")


@pytest.mark.cuda
def test_cuda_tensors_match_the_cpu():
    if not pc.is_available() or not torch.cuda.is_available():
        pytest.skip(pc.status())
    U, V, X, off, _y = _setup(dtype=torch.float32)
    with torch.no_grad():
        cpu = pt.packed_forward(U, V, X, off)
        gpu = pt.packed_forward(U.cuda(), V.cuda(), X.cuda(), off).cpu()
        ref64 = pt.packed_forward(U.double(), V.double(), X.double(), off)
    pyireg.testing.assert_tolerance(gpu.numpy(), cpu.numpy(), ref64.numpy(), "forward on CUDA")
    m = pt.PackedMLP(WIDTHS, 5, 3, seed=1).to("cuda")
    opt = pt.PackedSGD(m, lr=0.1, momentum=0.9)
    Xc, yc = torch.randn(8, 5, device="cuda"), torch.randint(0, 3, (8,), device="cuda")
    l0 = m.train_step(Xc, yc, opt)
    for _ in range(20):
        m.train_step(Xc, yc, opt)
    assert bool((m.losses(Xc, yc) < l0).all())


@pytest.mark.parametrize("dtype, bad", [(dt, b) for dt in (torch.int32, torch.int16, torch.uint8, torch.int64)
                                        for b in (3, -1) if not (dt == torch.uint8 and b < 0)])
def test_labels_out_of_range_are_refused_by_the_cuda_kernels(dtype, bad):
    """A label outside [0, k) of any integer dtype is one ValueError on the CUDA kernels, as on
    the CPU, and nothing is written (the kernels would have turned every network into NaN)."""
    m = pt.PackedMLP([2, 3], 4, 3, seed=0)
    opt = pt.PackedSGD(m, lr=0.1, momentum=0.9)
    X, y = torch.randn(5, 4), torch.tensor([0, 1, 2, bad, 0]).to(dtype)
    U0 = m.U.detach().clone()
    for emulated in (False, True):
        with pc.emulate() if emulated else torch.no_grad():
            with pytest.raises(ValueError, match=rf"y: expected labels in \[0, 3\), got {bad} at index 3"):
                m.train_step(X, y, opt)
            with pytest.raises(ValueError, match=r"y: expected labels in \[0, 3\)"):
                m.losses(X, y)
    assert torch.equal(m.U.detach(), U0) and not torch.isnan(m.V).any()


def test_the_plain_op_kernels_check_labels_and_offsets():
    """CompositeKernels (CUDA tensors without pyireg._cuda), called here on CPU tensors: labels and
    offsets are checked with the native engines' messages, not deep inside gather or
    repeat_interleave (on a GPU, a device-side assert)."""
    from pyireg.torch._kernels_cuda import CompositeKernels
    U, V, X, off, _ = _setup(dtype=torch.float32)
    U, V, X = U.detach(), V.detach(), X.detach()
    y = torch.tensor([0, 1, 3, 2], dtype=torch.int32)
    with pytest.warns(RuntimeWarning, match="plain PyTorch ops"), \
            pytest.raises(ValueError, match=r"y: expected labels in \[0, 3\), got 3 at index 2"):
        CompositeKernels.loss(U, V, X, y, None, off, "relu", "cross_entropy", True)
    for bad, match in ((torch.tensor([1, 2, 12]), r"offsets\[0\] == 0"),
                       (torch.tensor([0, 2, 2, 12]), "strictly increasing"),
                       (torch.tensor([0, 2, 11]), r"expected 11 rows \(offsets\[-1\]\), got 12")):
        with pytest.raises(ValueError, match=match):
            CompositeKernels.forward(U, V, X, bad, "relu", "cross_entropy")
    losses, gU, gV = CompositeKernels.loss(U, V, X, y.clamp(max=2), None, off, "relu", "cross_entropy", True)
    native = _ops.packed_loss(U.requires_grad_(), V.requires_grad_(), X, y.clamp(max=2), off)
    r64 = _ops.packed_loss(U.double(), V.double(), X.double(), y.clamp(max=2), off)
    pyireg.testing.assert_tolerance(losses.numpy(), native.detach().numpy(), r64.detach().numpy(), "losses")


def test_every_kernel_set_refuses_state_that_is_the_weights():
    """The memory check lives in the kernel sets (the CPU's in its binding, the CUDA ones in
    Python), so the eager entry points and the registered operators refuse alike; the plain-op
    kernels too, where a read-only overlap stays allowed."""
    from pyireg.torch._kernels_cuda import CompositeKernels
    U, V, X, off, _ = _setup(dtype=torch.float32)
    U, V, X = U.detach(), V.detach(), X.detach()
    h = [torch.full((len(WIDTHS),), v) for v in (0.1, 0.9, 0.0)]
    G = torch.zeros_like(U)
    for emulated in (False, True):
        with pc.emulate() if emulated else torch.no_grad():
            with pytest.raises(ValueError, match="state_U: shares memory with U"):
                pt.packed_apply_update(U, V, G, torch.zeros_like(V), off, U, torch.zeros_like(V), *h)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)     # the plain-op kernels warn once per process
        with pytest.raises(ValueError, match="state_U: shares memory with U"):
            CompositeKernels.apply_update(U, V, G, torch.zeros_like(V), off, U, torch.zeros_like(V), *h, "relu",
                                          "cross_entropy")
        with pytest.raises(ValueError, match="scale_U: shares memory with U"):
            CompositeKernels.ddp_scale(U, V, X, off, torch.full((len(WIDTHS),), 0.5), U, torch.zeros_like(V),
                                       "relu", "cross_entropy")


def test_engine_cache_info_with_an_emulated_engine_cached():
    """engine_cache_info summed every cached engine's workspace_bytes, which the CUDA engines
    have as a method: a TypeError once an emulated engine was cached."""
    U, V, X, off, y = _setup(dtype=torch.float32)
    with torch.no_grad(), pc.emulate():
        pt.packed_forward(U, V, X, off)
    info = pt.engine_cache_info()
    assert info["size"] >= 1 and isinstance(info["workspace_bytes"], int)


def test_tensors_that_are_only_read_may_share_memory_on_every_kernel_set():
    """The CUDA kernel set refused a gradient passed as both gU and gV, and X passed as U to
    ddp_scale ('shares memory', though neither is written), where the CPU accepts them: only
    the written tensors must have their own memory, on both."""
    k = 3
    m = pt.PackedMLP([2, 3], k, k, seed=0)
    U, V, off = m.U.detach(), m.V.detach(), m.offsets
    G = torch.randn(5, k)
    h = [torch.full((2,), v) for v in (0.1, 0.9, 0.0)]
    results = []
    for emulated in (False, True):
        u, v = U.clone(), V.clone()
        sU, sV = torch.zeros_like(u), torch.zeros_like(v)
        with pc.emulate() if emulated else torch.no_grad():
            pt.packed_apply_update(u, v, G, G, off, sU, sV, *h)
            kU, kV = torch.empty_like(u), torch.empty_like(v)
            pt.packed_ddp_scale(u, v, u, off, torch.full((2,), 0.5), kU, kV)
        results.append((u, v, kU, kV))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
