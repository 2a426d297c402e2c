"""Named initializations of PackedMLP (he_normal, he_uniform, xavier_normal, xavier_uniform,
lecun_normal): each layer's empirical spread against its formula (fans per layer and network:
U fan_in d, fan_out H; V fan_in H, fan_out k), numpy == torch bit for bit, a network's weights
alone == packed (per-network generators and the bulk path of pyireg._init_rng), bad names
refused, and the sweep's --init recorded in config.json and restored."""
import json

import numpy as np
import pytest
from helpers import tiny_npz

import pyireg
from pyireg import _init_rng
from pyireg.model import INITS

NAMES = list(INITS)
# z of the two-sided bounds below: a false failure has probability about 1e-9 per check
Z = 6.0


def _formula(name, fan_in, fan_out):
    """(distribution, std or bound) written out from the definitions, independently of model.py."""
    return {"he_normal": ("normal", np.sqrt(2.0 / fan_in)),
            "he_uniform": ("uniform", np.sqrt(6.0 / fan_in)),
            "xavier_normal": ("normal", np.sqrt(2.0 / (fan_in + fan_out))),
            "xavier_uniform": ("uniform", np.sqrt(6.0 / (fan_in + fan_out))),
            "lecun_normal": ("normal", np.sqrt(1.0 / fan_in))}[name]


def _check_spread(w, kind, scale, what):
    """Empirical moments of n draws against N(0, scale^2) or U(-scale, scale), with tolerances
    from n: the mean within Z sd / sqrt(n); the mean square within Z of its own standard error
    (relative sd sqrt(2 / n) for a normal, sqrt(0.8 / n) for a uniform: Var(w^2) / E[w^2]^2 =
    2 and 4/5); a uniform's draws inside [-b, b) and its largest |w| within 30 b / n of b
    (P(max |w| < b (1 - t)) = (1 - t)^n < e^-30)."""
    w = np.asarray(w, dtype=np.float64).ravel()
    n = w.size
    var = scale ** 2 if kind == "normal" else scale ** 2 / 3
    rel = np.sqrt(2.0 / n) if kind == "normal" else np.sqrt(0.8 / n)
    assert abs(w.mean()) <= Z * np.sqrt(var / n), (what, w.mean())
    assert abs(np.mean(w ** 2) / var - 1) <= Z * rel, (what, np.mean(w ** 2) / var)
    if kind == "uniform":
        assert w.min() >= -scale and w.max() < scale, what
        assert np.abs(w).max() >= scale * (1 - 30.0 / n), what
    else:   # a normal of this many draws reaches beyond any uniform of the same variance
        assert np.abs(w).max() > np.sqrt(3 * var), what


@pytest.mark.parametrize("name", NAMES)
def test_each_layer_of_each_network_follows_its_formula(name):
    d, k = 300, 40
    widths = [1500, 7, 800]                     # mixed: each network's own fans
    m = pyireg.PackedMLP(widths, d, k, init=name, seed=11, dtype="float64")
    for n, H in enumerate(widths):
        rows = slice(int(m.offsets[n]), int(m.offsets[n + 1]))
        kind, s_u = _formula(name, d, H)
        _check_spread(m.U[rows], kind, s_u, f"{name} U of H={H}")
        kind, s_v = _formula(name, H, k)
        _check_spread(m.V[rows], kind, s_v, f"{name} V of H={H}")


@pytest.mark.parametrize("name", ["he_uniform", "xavier_normal"])
def test_the_bulk_path_follows_the_formula_too(name):
    """Thousands of width-1 networks are drawn together (pyireg._init_rng): pooled over networks
    of one width, the draws follow the formula."""
    d, k = 20, 3
    m = pyireg.PackedMLP([1] * 4000 + [2] * 4000, d, k, init=name, seed=5, dtype="float64")
    for H, rows in ((1, slice(0, 4000)), (2, slice(4000, 12000))):
        kind, s_u = _formula(name, d, H)
        _check_spread(m.U[rows], kind, s_u, f"U H={H}")
        kind, s_v = _formula(name, H, k)
        _check_spread(m.V[rows], kind, s_v, f"V H={H}")


def test_lecun_normal_is_the_default_bit_for_bit():
    for dtype in ("float32", "float64"):
        a = pyireg.PackedMLP([1, 5, 300] + [1] * 300, 7, 3, seed=2, dtype=dtype)
        b = pyireg.PackedMLP([1, 5, 300] + [1] * 300, 7, 3, seed=2, dtype=dtype, init="lecun_normal")
        np.testing.assert_array_equal(a.U, b.U)
        np.testing.assert_array_equal(a.V, b.V)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_numpy_and_torch_give_the_same_weights(name, dtype):
    torch = pytest.importorskip("torch")
    from pyireg.torch import PackedMLP as TorchPacked
    widths = [1, 3, 37, 1000] + [2] * 300         # both drawing paths
    a = pyireg.PackedMLP(widths, 9, 4, init=name, seed=123, dtype=dtype)
    b = TorchPacked(widths, 9, 4, init=name, seed=123, dtype=getattr(torch, dtype))
    assert b.U.dtype == getattr(torch, dtype)
    np.testing.assert_array_equal(a.U, b.U.detach().numpy())
    np.testing.assert_array_equal(a.V, b.V.detach().numpy())


@pytest.mark.parametrize("name", NAMES)
def test_a_network_alone_has_the_weights_it_has_packed(name):
    """Network i of a model seeded s is rebuilt alone from child i of SeedSequence(s): with 300
    small networks the packed model takes the bulk path, the wide ones their own generators."""
    widths = [3, 1, 200] + [1, 2] * 150 + [17]
    d, k = 5, 2
    packed = pyireg.PackedMLP(widths, d, k, init=name, seed=9, dtype="float64")
    for i in [0, 1, 2, 3, 4, 150, len(widths) - 1]:
        alone = pyireg.PackedMLP([widths[i]], d, k, init=name, dtype="float64",
                                 seed=[np.random.SeedSequence(9, spawn_key=(i,))])
        rows = slice(int(packed.offsets[i]), int(packed.offsets[i + 1]))
        np.testing.assert_array_equal(packed.U[rows], alone.U)
        np.testing.assert_array_equal(packed.V[rows], alone.V)
    # a different neighbourhood: the first networks with other widths after them
    other = pyireg.PackedMLP(widths[:3] + [50, 50], d, k, init=name, seed=9, dtype="float64")
    np.testing.assert_array_equal(other.U[:204], packed.U[:204])
    # integer seeds per network: network n draws from default_rng(seeds[n])
    seeds = np.array([4, 8, 15])
    m = pyireg.PackedMLP([2, 3, 4], d, k, init=name, seed=seeds, dtype="float64")
    one = pyireg.PackedMLP([3], d, k, init=name, seed=np.array([8]), dtype="float64")
    np.testing.assert_array_equal(m.U[2:5], one.U)


def test_bulk_uniforms_are_numpys_random():
    counts = np.array([5, 0, 40, 1, 17])
    Zs, order, c_sorted = _init_rng.uniforms(_init_rng.child_pcg_states(77, 3, 5), counts)
    for pos, lane in enumerate(order):
        want = np.random.default_rng(np.random.SeedSequence(77, spawn_key=(3 + int(lane),))).random(int(counts[lane]))
        np.testing.assert_array_equal(Zs[:int(c_sorted[pos]), pos], want)
    assert _init_rng.check_uniform()


@pytest.mark.parametrize("bad", ["he", "He_Normal", "kaiming_normal", 3, ("he_normal",)])
def test_bad_init_names_are_refused(bad):
    with pytest.raises(ValueError, match=r"^init: expected one of he_normal, he_uniform, xavier_normal, "
                                         r"xavier_uniform, lecun_normal \(or None\), got"):
        pyireg.PackedMLP([2], 3, 2, init=bad)


def test_init_and_init_std_together_are_refused():
    with pytest.raises(ValueError, match="^init: give a named init or init_std, not both"):
        pyireg.PackedMLP([2], 3, 2, init="he_normal", init_std=0.1)
    torch = pytest.importorskip("torch")  # noqa: F841
    from pyireg.torch import PackedMLP as TorchPacked
    with pytest.raises(ValueError, match="^init: expected one of"):
        TorchPacked([2], 3, 2, init="glorot")


def test_the_sweep_records_init_and_resumes_with_it(tmp_path):
    from helpers import Killed, tiny_classes

    from pyireg.experiments import sweep
    from pyireg.experiments.training import build, spec_from_config
    ds = tiny_classes()
    kw = dict(widths=[2, 9], seeds=[0, 1], epochs=3, batch_size=20, progress=False, init="xavier_uniform")
    ref = sweep(ds, **kw).history.drop(columns=["train_seconds"])
    default = sweep(ds, **{**kw, "init": None}).history
    assert not np.array_equal(default.train_loss, ref.train_loss)        # the init changed something

    def stop(rep, epoch):
        if rep == 1 and epoch == 1:
            raise Killed
    with pytest.raises(Killed):
        sweep(ds, out=tmp_path / "s", on_epoch=stop, **kw)
    cfg = json.loads((tmp_path / "s" / "config.json").read_text())
    assert cfg["init"] == "xavier_uniform" and cfg["init_std"] is None
    with pytest.raises(ValueError, match=r"resume: .*init: \"xavier_uniform\" there, \"he_normal\" here"):
        sweep(ds, out=tmp_path / "s", resume=True, **{**kw, "init": "he_normal"})
    res = sweep(ds, out=tmp_path / "s", resume=True, **kw)
    import pandas as pd
    pd.testing.assert_frame_equal(res.history.drop(columns=["train_seconds"]), ref)
    # the spec of the saved config builds the initialization a PackedMLP with init gives
    spec = spec_from_config(cfg)
    assert spec.init == "xavier_uniform"
    model, _ = build(ds, spec, 1, range(2))
    want = pyireg.PackedMLP([2, 9], ds.num_features, ds.num_classes, init="xavier_uniform",
                            seed=np.random.SeedSequence(1).spawn(2), dtype=ds.dtype)
    np.testing.assert_array_equal(model.U, want.U)
    with pytest.raises(ValueError, match="^init: expected one of"):
        sweep(ds, out=tmp_path / "bad", **{**kw, "init": "he"})
    with pytest.raises(ValueError, match="^init: give a named init or init_std"):
        sweep(ds, out=tmp_path / "bad", init_std=0.1, **kw)
    assert not (tmp_path / "bad").exists()


def test_command_line_init(tmp_path, capsys):
    from pyireg.cli import main
    npz = tiny_npz(tmp_path / "d.npz")
    base = ["sweep", "--data", str(npz), "--n-val", "20", "--n-test", "20", "--widths", "2,5", "--epochs", "2",
            "--batch-size", "20", "--quiet", "--threads", "1"]
    assert main([*base, "--init", "he_uniform", "--out", str(tmp_path / "a")]) == 0
    assert json.loads((tmp_path / "a" / "config.json").read_text())["init"] == "he_uniform"
    assert main([*base, "--init", "he_uniform", "--out", str(tmp_path / "a"), "--resume"]) == 0
    for extra, match in ((["--init", "he"], "argument --init: invalid choice: 'he'"),
                         (["--init", "he_normal", "--init-std", "0.1"], "--init: give --init or --init-std")):
        capsys.readouterr()
        try:
            rc = main([*base, *extra, "--out", str(tmp_path / "b")])
        except SystemExit as e:              # argparse's refusal
            rc = e.code
        assert rc != 0
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) <= 2 and match in err[-1], err
    assert not (tmp_path / "b").exists()
