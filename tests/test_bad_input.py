"""Bad input raises a clear Python exception naming the argument; it never crashes."""
import numpy as np
import pytest

import pyireg
from pyireg import _core


@pytest.fixture
def model():
    return pyireg.PackedMLP([2, 3], 4, 3)


X = np.zeros((5, 4), np.float32)
Y = np.array([0, 1, 2, 0, 1])


@pytest.mark.parametrize("widths,exc,match", [
    ([], ValueError, "widths: expected at least one"),
    ([3, 0], ValueError, "widths: expected positive integers, got 0 at index 1"),
    ([3, -2], ValueError, "widths"),
    ([2.5], ValueError, "widths"),
    (4, TypeError, "widths: expected a sequence"),
    (None, TypeError, "widths"),
])
def test_bad_widths(widths, exc, match):
    with pytest.raises(exc, match=match):
        pyireg.PackedMLP(widths, 4, 3)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="in_features"):
        pyireg.PackedMLP([2], 0, 3)
    with pytest.raises(ValueError, match="out_features"):
        pyireg.PackedMLP([2], 4, -1)
    with pytest.raises(ValueError, match="activation"):
        pyireg.PackedMLP([2], 4, 3, activation="tanh")
    with pytest.raises(ValueError, match="dtype"):
        pyireg.PackedMLP([2], 4, 3, dtype="float16")
    with pytest.raises(ValueError, match=r"init_std: expected a scalar or an array of shape \(2,\)"):
        pyireg.PackedMLP([2, 2], 4, 3, init_std=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="seed"):
        pyireg.PackedMLP([2, 2], 4, 3, seed=[1, 2, 3])


@pytest.mark.parametrize("bad,exc,match", [
    (np.zeros((5, 3), np.float32), ValueError, r"X: expected shape \(\*, 4\)"),
    (np.zeros((5, 4), np.complex64), TypeError, r"X: expected real numbers \(integer or floating\), got complex"),
    (np.zeros((5, 4), bool), TypeError, "X: expected real numbers .* got boolean"),
    (np.array([["a"] * 4] * 5), TypeError, "X: expected real numbers .* got string"),
    (np.full((5, 4), 1e39), ValueError,
     r"X: contains NaN or inf after conversion to float32 \(first at index \(0, 0\)\)"),
    (np.zeros(4, np.float32), ValueError, "X: expected a 2-d array"),
    (np.zeros((0, 4), np.float32), ValueError, "X: expected at least one sample"),
    (np.array([[0, 0, np.nan, 0]] * 5, np.float32), ValueError, r"X: contains NaN or inf \(first at index \(0, 2\)\)"),
    (np.array([[0, np.inf, 0, 0]] * 5, np.float32), ValueError, "X: contains NaN or inf"),
])
def test_bad_X(model, bad, exc, match):
    with pytest.raises(exc, match=match):
        model.forward(bad)
    with pytest.raises(exc, match=match):
        model.loss_and_grad(bad, Y[: len(bad)] if len(bad) else Y[:0])


@pytest.mark.parametrize("bad,exc,match", [
    (np.array([0, 1, 3, 0, 1]), ValueError, r"y: expected labels in \[0, 3\), got 3 at index 2"),
    (np.array([0, -1, 2, 0, 1]), ValueError, r"y: expected labels in \[0, 3\), got -1 at index 1"),
    (np.array([0, 1, 2]), ValueError, "y: expected a 1-d array of 5 labels"),
    (np.array([0.0, 1, 2, 0, 1]), TypeError, "y: expected integer class labels"),
])
def test_bad_labels(model, bad, exc, match):
    with pytest.raises(exc, match=match):
        model.loss_and_grad(X, bad)
    with pytest.raises(exc, match=match):
        model.evaluate(X, bad)
    with pytest.raises(exc, match=match):
        pyireg.MomentumSGD(model, 0.1).step(X, bad)


def test_non_contiguous_inputs_are_copied_and_give_the_same_answer(model):
    big = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32)
    strided = big[:, ::2]
    assert not strided.flags.c_contiguous
    np.testing.assert_array_equal(model.forward(strided), model.forward(np.ascontiguousarray(strided)))
    Xf = np.asfortranarray(big[:, :4])
    np.testing.assert_array_equal(model.forward(Xf), model.forward(np.ascontiguousarray(Xf)))


def test_bad_hyperparameters(model):
    with pytest.raises(ValueError, match="lr: expected non-negative values"):
        pyireg.MomentumSGD(model, -0.1)
    with pytest.raises(ValueError, match=r"momentum: expected a scalar or an array of shape \(2,\)"):
        pyireg.MomentumSGD(model, 0.1, momentum=[0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match="weight_decay: expected finite values"):
        pyireg.MomentumSGD(model, 0.1, weight_decay=np.nan)
    opt = pyireg.MomentumSGD(model, 0.1)
    with pytest.raises(ValueError, match="lr"):
        opt.lr = [0.1, -1.0]
    with pytest.raises(TypeError, match="model: expected a PackedMLP"):
        pyireg.MomentumSGD("not a model", 0.1)


def test_bad_evaluate_arguments(model):
    with pytest.raises(ValueError, match="batch_size: expected a positive integer"):
        model.evaluate(X, Y, batch_size=0)
    with pytest.raises(IndexError, match=r"i: expected a network index in \[0, 2\)"):
        model.network(2)


def test_private_engine_checks_its_arguments(model):
    """The binding layer checks too, so misuse of the private API cannot crash the process."""
    eng = model._engine
    with pytest.raises(ValueError, match=r"U: expected a float32 array of shape \(5, 4\)"):
        eng.forward(np.zeros((4, 4), np.float32), model.V, X)
    with pytest.raises(TypeError, match="V: expected a float32 array"):
        eng.forward(model.U, model.V.astype(np.float64), X)
    with pytest.raises(ValueError, match="X: expected a C-contiguous array"):
        eng.forward(model.U, model.V, np.zeros((4, 8), np.float32)[:, ::2])
    with pytest.raises(ValueError, match=r"y: expected labels in \[0, 3\)"):
        eng.loss_and_grad(model.U, model.V, X, np.full(5, 7, np.int32), None, np.empty_like(model.U),
                          np.empty_like(model.V))
    ro = model.U.copy()
    ro.flags.writeable = False
    opt = pyireg.MomentumSGD(model, 0.1)
    with pytest.raises(ValueError, match="U: expected a writeable array"):
        eng.step(ro, model.V, X, Y.astype(np.int32), None, *opt._hyper())
    with pytest.raises(ValueError, match="offsets: expected strictly increasing"):
        _core.EngineF32(np.array([0, 2, 2], np.int64), 4, 3)
    with pytest.raises(ValueError, match="activation"):
        _core.EngineF32(np.array([0, 2], np.int64), 4, 3, "gelu")
    with pytest.raises(ValueError, match="simd: expected one of generic, avx2, avx512, got 'neon'"):
        _core.set_simd("neon")
    with pytest.raises(ValueError, match="num_threads"):
        _core.set_num_threads(0)
    # arrays a call writes may not share memory with another of its arrays (the kernels' restrict)
    lr_mom_wd = opt._hyper()[3:]
    with pytest.raises(ValueError, match="state_U: shares memory with U"):
        eng.step(model.U, model.V, X, Y.astype(np.int32), None, "momentum_sgd", model.U, model.V, *lr_mom_wd)
    with pytest.raises(ValueError, match="state_V: shares memory with U"):
        eng.apply_update(model.U, model.V, np.zeros_like(model.U), np.zeros_like(model.V), "momentum_sgd",
                         opt.bufU, model.U.reshape(-1)[:model.V.size].reshape(model.V.shape), *lr_mom_wd)
    with pytest.raises(ValueError, match="gU: shares memory with X"):
        big = np.zeros(max(model.U.size, X.size), np.float32)
        eng.loss_and_grad(model.U, model.V, big[:X.size].reshape(X.shape), Y.astype(np.int32), None,
                          big[:model.U.size].reshape(model.U.shape), np.empty_like(model.V))
    with pytest.raises(ValueError, match="kV: shares memory with kU"):
        k = np.zeros(model.U.size + model.V.size, np.float32)
        eng.ddp_scale(model.U, model.V, X, np.full(2, 0.5, np.float32), k[:model.U.size].reshape(model.U.shape),
                      k[model.U.size - 1:model.U.size - 1 + model.V.size].reshape(model.V.shape))
    U0 = model.U.copy()
    assert np.array_equal(model.U, U0)
    # another byte order passed the dtype's kind and size and was read as garbage (-4.6e33)
    with pytest.raises(TypeError, match=r"X: expected native byte order, got >f4"):
        eng.forward(model.U, model.V, X.astype(">f4"))
    with pytest.raises(TypeError, match=r"y: expected native byte order, got >i4"):
        eng.loss_and_grad(model.U, model.V, X, Y.astype(">i4"), None, np.empty_like(model.U),
                          np.empty_like(model.V))
    with pytest.raises(TypeError, match="offsets: expected native byte order"):
        _core.EngineF32(np.array([0, 2], ">i8"), 4, 3)


@pytest.mark.parametrize("bad", ["x", "float16", "int32", object()])
def test_a_bad_dtype_is_a_value_error_naming_dtype(bad):
    with pytest.raises(ValueError, match="^dtype: expected"):
        pyireg.PackedMLP([2], 3, 2, dtype=bad)
    with pytest.raises(ValueError, match="^dtype: expected"):
        pyireg.data.from_arrays(np.ones((10, 2)), np.arange(10) % 2, dtype=bad)


def test_dtype_none_means_float32_for_the_model_and_the_data():
    assert pyireg.PackedMLP([2], 3, 2, dtype=None).dtype == np.float32
    assert pyireg.data.from_arrays(np.ones((10, 2)), np.arange(10) % 2, dtype=None).dtype == "float32"


def _misaligned(a: np.ndarray) -> np.ndarray:
    """The values of ``a`` in a C-contiguous view one byte off natural alignment."""
    buf = np.zeros(a.nbytes + 1, np.uint8)
    view = np.frombuffer(buf.data, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
    view[...] = a
    assert view.flags.c_contiguous and not view.flags.aligned
    return view


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_misaligned_arrays_are_copied_to_aligned_memory(dtype):
    rng = np.random.default_rng(0)
    model = pyireg.PackedMLP([1, 5, 17], 7, 3, seed=1, dtype=dtype)
    X = rng.standard_normal((9, 7)).astype(dtype)
    y = np.arange(9, dtype=np.int32) % 3
    np.testing.assert_array_equal(model.forward(_misaligned(X)), model.forward(X))
    want = model.loss_and_grad(X, y)
    for a, b in zip(model.loss_and_grad(_misaligned(X), _misaligned(y)), want):
        np.testing.assert_array_equal(a, b)
    from pyireg._validate import as_float_array, as_labels
    assert as_float_array(_misaligned(X), "X", np.dtype(dtype), 2).flags.aligned
    assert as_labels(_misaligned(y), "y", 9, 3).flags.aligned
    with pytest.raises(ValueError, match="aligned=False"):
        pyireg.PackedMLP.from_weights([1, 5, 17], _misaligned(model.U), model.V, copy=False)


@pytest.mark.parametrize("call, match", [
    (lambda: pyireg.PackedMLP([1], 2**63, 2), "in_features: expected a positive integer below 2\\*\\*63"),
    (lambda: pyireg.set_memory_limit(2**64), r"bytes: expected a memory limit in bytes"),
    (lambda: pyireg.set_memory_limit(1.5), r"bytes: expected a memory limit in bytes"),
    (lambda: pyireg.PackedMLP([1, 2], 3, 2, seed=-1), "seed: expected a non-negative integer, got -1"),
    (lambda: pyireg.PackedMLP([1, 2], 3, 2, seed=np.array([3, -2])),
     "seed: expected non-negative integers, got -2 at index 1"),
])
def test_huge_integers_and_negative_seeds_are_one_line_naming_the_argument(call, match):
    """Python integers beyond int64 reached pybind11 (a multi-line 'incompatible function
    arguments' TypeError naming no argument); negative seeds gave numpy's message without the
    argument's name, the array case from inside the weight-drawing threads."""
    with pytest.raises(ValueError, match=match):
        call()


def test_torch_tensors_numpy_cannot_view_are_named_or_resolved():
    """A sparse tensor got "convert it with .float()" (wrong advice); a tensor with the negative
    bit set (a lazy negation) raised torch's own RuntimeError from inside the conversion. The
    sparse one is refused naming X; the negated one is resolved and gives the right answer."""
    torch = pytest.importorskip("torch")
    m = pyireg.PackedMLP([2, 3], 4, 3, seed=0)
    X = torch.randn(5, 4)
    with pytest.raises(TypeError, match=r"X: expected a dense \(strided\) tensor, got a torch.sparse_coo one"):
        m.forward(X.to_sparse())
    neg = torch._neg_view(X)
    assert neg.is_neg()
    np.testing.assert_array_equal(m.forward(neg), m.forward(-X.numpy()))


def test_optional_private_engine_arrays_must_be_numpy_arrays(model):
    """An optional output given as a list became a temporary array that the binding's memory
    check then read as the list itself (a segfault, 3 of 3 runs), and whose data pointer
    outlived it: refused by name now."""
    eng = model._engine
    G = np.zeros((2, 5, 3), np.float32)
    with pytest.raises(TypeError, match="gU: expected a numpy array, got list"):
        eng.backward(model.U, model.V, X, G, np.zeros(model.U.shape).tolist(), None, None, None)
    with pytest.raises(TypeError, match="weights: expected a numpy array, got list"):
        pyireg.PackedMLP([2, 3], 4, 3, loss="squared")._engine.loss_and_grad(
            model.U, model.V, X, np.zeros((5, 3), np.float32), [[1.0] * 3] * 5, np.empty_like(model.U),
            np.empty_like(model.V))
