"""PackedMLP as an object: pickling, copies, shared weights, dtypes, and the input conversion
rule (any real dtype, lists, pandas and torch inputs become the model's dtype once)."""
import pickle

import numpy as np
import pandas as pd
import pytest
import torch

import pyireg

from helpers import make_data


@pytest.mark.parametrize("loss", ["cross_entropy", "squared"])
def test_pickle_round_trip(loss):
    model = pyireg.PackedMLP([3, 1, 40], 7, 4, activation="linear", loss=loss, dtype="float64", seed=5)
    back = pickle.loads(pickle.dumps(model))
    assert (back.widths, back.activation, back.loss, back.dtype) == (model.widths, "linear", loss, np.float64)
    np.testing.assert_array_equal(back.U, model.U)
    np.testing.assert_array_equal(back.V, model.V)
    X, _ = make_data(9, 7, 4, dtype=np.float64)
    np.testing.assert_array_equal(back.forward(X), model.forward(X))
    back.U[0, 0] += 1                       # an independent copy
    assert back.U[0, 0] != model.U[0, 0]


def test_a_model_with_a_diverged_network_copies_and_pickles_as_it_is():
    """A diverged network's weights are NaN: the model's own state is copied and pickled as it
    is (the NaN check is for weights a caller gives), its other networks unchanged."""
    model = pyireg.PackedMLP([2, 3], 4, 2, seed=0)
    model.U[0, 0] = np.nan                                   # network 0 diverged
    for other in (model.copy(), pickle.loads(pickle.dumps(model))):
        np.testing.assert_array_equal(other.U, model.U)      # NaN where NaN
        np.testing.assert_array_equal(other.V, model.V)
        X, _ = make_data(5, 4, 2)
        np.testing.assert_array_equal(other.forward(X)[1], model.forward(X)[1])
    with pytest.raises(ValueError, match="U: contains NaN or inf"):      # given weights are still checked
        pyireg.PackedMLP.from_weights([2, 3], model.U, model.V)


def test_copy_and_from_weights_share_or_copy_as_asked():
    model = pyireg.PackedMLP([2, 5], 3, 2, seed=0)
    c = model.copy()
    c.V[...] = 0
    assert model.V.any()
    U, V = model.U.copy(), model.V.copy()
    shared = pyireg.PackedMLP.from_weights([2, 5], U, V, copy=False)
    assert shared.U is U and shared.V is V
    X, _ = make_data(4, 3, 2)
    before = shared.forward(X)
    V *= 2
    np.testing.assert_allclose(shared.forward(X), 2 * before, rtol=1e-6)
    with pytest.raises(ValueError,
                       match="U: with copy=False, expected a writeable, aligned, C-contiguous float32 array"):
        pyireg.PackedMLP.from_weights([2, 5], np.asfortranarray(U), V, copy=False)
    both = np.zeros((7, 4), np.float32)                     # U and V one array (d = k = 4)
    with pytest.raises(ValueError, match="U, V: with copy=False, expected two arrays of their own memory"):
        pyireg.PackedMLP.from_weights([7], both, both, copy=False)
    block = np.zeros((14, 4), np.float32)
    with pytest.raises(ValueError, match="U, V: with copy=False, expected two arrays of their own memory"):
        pyireg.PackedMLP.from_weights([7], block[:7], block[3:10], copy=False)
    assert pyireg.PackedMLP.from_weights([7], block[:7], block[7:], copy=False).V.base is block
    with pytest.raises(ValueError, match="U: float16 weights; pass dtype='float32' or 'float64' to convert them"):
        pyireg.PackedMLP.from_weights([2, 5], U.astype(np.float16), V)
    assert pyireg.PackedMLP.from_weights([2, 5], U.astype(np.float16), V, dtype="float32").U.dtype == np.float32
    with pytest.raises(ValueError, match=r"U: expected shape \(6, 3\)"):
        pyireg.PackedMLP.from_weights([2, 4], U, V[:6])


def test_assigning_U_copies_into_the_same_memory():
    model = pyireg.PackedMLP([2, 5], 3, 2, seed=0)
    opt = pyireg.MomentumSGD(model, 0.1)
    U = model.U
    model.U = np.ones((7, 3))              # float64 in, converted
    assert model.U is U and (U == 1).all()
    model.U *= 2                            # in-place operators keep working
    assert (model.U == 2).all() and opt.model.U is U
    with pytest.raises(ValueError, match=r"U: expected shape \(7, 3\)"):
        model.U = np.ones((6, 3))


@pytest.mark.parametrize("dtype", ["float64", np.float64, np.dtype("float64"), torch.float64])
def test_dtype_accepts_strings_numpy_and_torch_dtypes(dtype):
    assert pyireg.PackedMLP([2], 3, 2, dtype=dtype).dtype == np.float64
    with pytest.raises(ValueError, match="dtype: expected 'float32' or 'float64'"):
        pyireg.PackedMLP([2], 3, 2, dtype="float16")


def test_inputs_of_any_real_kind_are_converted_once_to_the_model_dtype():
    model = pyireg.PackedMLP([4, 30], 6, 3, seed=1)
    X64, y = make_data(10, 6, 3, dtype=np.float64)
    X32 = X64.astype(np.float32)
    want = model.loss_and_grad(X32, y)
    for X in (X64, X64.tolist(), pd.DataFrame(X64), torch.tensor(X64, requires_grad=True)):
        for yy in (y, y.tolist(), pd.Series(y), torch.tensor(y)):
            for a, b in zip(model.loss_and_grad(X, yy), want):
                np.testing.assert_array_equal(a, b)
    Xi = np.arange(60).reshape(10, 6) % 5
    np.testing.assert_array_equal(model.forward(Xi), model.forward(Xi.astype(np.float32)))
    with pytest.raises(TypeError, match="y: expected integer class labels, got dtype float64"):
        model.loss_and_grad(X32, y.astype(float))
    with pytest.raises(ValueError, match="init_std: expected finite values in float32"):
        pyireg.PackedMLP([2], 3, 2, init_std=1e39)
    pyireg.PackedMLP([2], 3, 2, init_std=1e39, dtype="float64")


def test_init_is_drawn_in_blocks_with_the_numbers_of_one_draw():
    """The blocked initialization gives exactly rng.standard_normal((H, d)) * std per layer."""
    model = pyireg.PackedMLP([3, 20000], 130, 2, seed=[4, 5], init_std=(0.25, 2.0))
    rng = np.random.default_rng(5)
    U1 = (rng.standard_normal((20000, 130)) * 0.25).astype(np.float32)
    V1 = (rng.standard_normal((20000, 2)) * 2.0).astype(np.float32)
    np.testing.assert_array_equal(model.network(1)[0], U1)
    np.testing.assert_array_equal(model.network(1)[1], V1)


def test_seed_sequences_rebuild_part_of_a_packed_model():
    full = pyireg.PackedMLP([3, 9, 4, 7], 5, 2, seed=11)
    children = np.random.SeedSequence(11).spawn(4)
    part = pyireg.PackedMLP([9, 4], 5, 2, seed=children[1:3])
    s = slice(full.offsets[1], full.offsets[3])
    np.testing.assert_array_equal(part.U, full.U[s])
    np.testing.assert_array_equal(part.V, full.V[s])
    with pytest.raises(ValueError, match="seed: expected 2 seed sequences"):
        pyireg.PackedMLP([9, 4], 5, 2, seed=children[:3])


def test_from_torch_keeps_the_dtype_and_bfloat16_is_named():
    m = pyireg.PackedMLP([2, 3], 4, 2, dtype="float64", activation="linear", seed=0)
    back = pyireg.PackedMLP.from_torch(m.to_torch(), loss="squared")
    assert (back.dtype, back.activation, back.loss) == (np.float64, "linear", "squared")
    np.testing.assert_array_equal(back.U, m.U)
    with pytest.raises(TypeError, match=r"X: expected real numbers numpy can hold, got a torch torch.bfloat16"):
        pyireg.PackedMLP([2], 4, 2).forward(torch.zeros(3, 4, dtype=torch.bfloat16))


def test_initialization_does_not_depend_on_the_thread_count():
    """Networks are drawn by several threads once a model has more than 2 x 2^20 weights; each
    network is drawn by one thread from its own generator."""
    from pyireg import _core
    from pyireg.model import _INIT_BLOCK
    widths = [5000, 3, 20000, 1, 700]
    assert sum(widths) * (100 + 10) > 2 * _INIT_BLOCK          # two threads draw it
    models = []
    for threads in (1, 2):
        _core.set_num_threads(threads)
        models.append(pyireg.PackedMLP(widths, 100, 10, seed=7, init_std=(np.linspace(0.5, 2, 5), 0.3)))
    np.testing.assert_array_equal(models[0].U, models[1].U)
    np.testing.assert_array_equal(models[0].V, models[1].V)
    alone = pyireg.PackedMLP([20000], 100, 10, seed=np.random.SeedSequence(7).spawn(5)[2:3], init_std=(1.25, 0.3))
    np.testing.assert_array_equal(alone.U, models[1].U[5003:25003])
