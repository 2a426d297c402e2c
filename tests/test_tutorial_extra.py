"""The tutorial demos of experiments/tutorial_extra.py on their quick settings: Adam's two weight
decays (the same for SGD up to rounding, apart for Adam), spectral bias (low frequencies first),
and their figures."""
import numpy as np
import pytest

from pyireg.experiments.tutorial_extra import adam_weight_decay, learned_epoch, spectral_bias, spectral_target
from pyireg.tutorial_plots import plot_adam_weight_decay, plot_spectral_bias


def test_l2_and_decoupled_decay_agree_for_sgd_and_part_for_adam(tmp_path):
    t = adam_weight_decay(widths=(4, 16, 64), steps=100, every=20)
    end = t[t["step"] == 100].set_index(["optimizer", "width"])
    start = t[t["step"] == 0]
    assert (start["relative_distance"] == 0).all()
    # SGD: the same update in exact arithmetic; the runs differ by rounding only
    assert (t[t["optimizer"] == "SGD"]["relative_distance"] < 1e-12).all()
    for w in (4, 16, 64):
        assert end.loc[("Adam", w), "relative_distance"] > 0.1
        # the L2 term passes through Adam's normalization: it holds the weights much smaller
        assert end.loc[("Adam", w), "norm_l2"] < end.loc[("Adam", w), "norm_decoupled"]
    assert plot_adam_weight_decay(t, tmp_path / "adam.png").stat().st_size > 1000


@pytest.mark.parametrize("samples", [19, 64])       # 19: the smallest grid spectral_bias takes for f up to 9
def test_the_target_components_are_orthogonal_on_the_grid(samples):
    x = -1.0 + 2.0 * np.arange(samples) / samples
    B = np.stack([spectral_target(x, [f]) for f in (1, 3, 5, 9)], 1)
    G = B.T @ B
    np.testing.assert_allclose(G, np.diag(np.diag(G)), atol=1e-10)
    np.testing.assert_allclose(np.diag(G), samples / 2)


def test_spectral_bias_refuses_a_grid_that_aliases_its_frequencies(tmp_path, capsys):
    """On 16 points f = 9 is f = 7 up to sign and on 18 it is the zero vector (relative errors
    of 1e13 at --samples 3 went unnoticed): samples <= 2 max(f) is refused, before any file."""
    x = -1.0 + 2.0 * np.arange(16) / 16
    np.testing.assert_allclose(spectral_target(x, [9]), -spectral_target(x, [7]), atol=1e-12)
    x = -1.0 + 2.0 * np.arange(18) / 18
    np.testing.assert_allclose(spectral_target(x, [9]), 0, atol=1e-12)
    for samples in (3, 16, 18):
        with pytest.raises(ValueError, match=rf"^samples \(--samples\): expected more than .* = 18 .*got {samples}$"):
            spectral_bias(widths=(4,), frequencies=(1, 3, 5, 9), samples=samples, epochs=1)
    t = spectral_bias(widths=(4,), frequencies=(1, 3, 5, 9), samples=19, epochs=1)
    assert np.isfinite(t["relative_error"]).all() and t["relative_error"].max() < 10
    from pyireg.cli import main
    never = tmp_path / "never"
    assert main(["demo", "spectral-bias", "--quick", "--samples", "16", "--out", str(never)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--samples" in err[0] and "got 16" in err[0] and not never.exists(), err


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_low_frequencies_are_learned_first(seed, tmp_path):
    t = spectral_bias(widths=(64, 256), frequencies=(1, 3, 5, 9), epochs=300, every=10, seed=seed)
    first = learned_epoch(t, 0.5)
    end = t[t["epoch"] == 300].pivot_table(index="width", columns="frequency", values="relative_error")
    for w in (64, 256):
        # frequency 1 falls below half its error before frequency 3 does; 5 and 9 not yet or later
        assert first.loc[w, 1] < first.loc[w, 3]
        assert not first.loc[w, 5] <= first.loc[w, 3]
        # after 300 epochs the error of each component grows with its frequency, with margin
        e = end.loc[w].to_numpy()
        assert np.all(np.diff(e) > 0.03), e  # smallest step on seeds 0-7: 0.045
    assert plot_spectral_bias(t, tmp_path / "spectral.png").stat().st_size > 1000


def test_gradient_noise_std_matches_per_sample_gradients():
    import pyireg
    from pyireg import reference as R
    from pyireg.experiments.tutorial_extra import _gradient_noise_std
    rng = np.random.default_rng(3)
    m = pyireg.PackedMLP([1, 4, 7], 5, 1, loss="squared", seed=2, dtype="float64")
    X, y = rng.standard_normal((12, 5)), rng.standard_normal((12, 1))
    got = _gradient_noise_std(m, X, y)
    mods = R.modules_from_packed(m.U, m.V, m.offsets, dtype=__import__("torch").float64)
    for n, P in enumerate(np.array(m.widths) * 6):
        g = np.stack([np.concatenate([a.ravel() for a in R.loss_and_grad([mods[n]], X[i:i + 1], y[i:i + 1],
                                                                          loss="squared")[1:]]) for i in range(12)])
        np.testing.assert_allclose(got[n], np.sqrt(g.var(0).sum() / P), rtol=1e-10)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_langevin_quick(seed, tmp_path):
    """What holds on the quick setting (seeds 0-2), and only that: SGD at lr 0.05 ends flatter as
    the temperature grows (|B| 16 -> 1: top eigenvalue 0.74-0.88 x); full-batch GD with isotropic
    Gaussian noise of the same per-step variance does not: at |B| = 1 it ends 1.2-1.6 x sharper
    than SGD. Outcomes do not line up by temperature here (see docs/tutorial-extra.md)."""
    from pyireg.experiments.tutorial_extra import langevin
    from pyireg.tutorial_plots import plot_langevin
    t = langevin(seed=seed)
    assert len(t) == 2 * 2 * 3 and set(t["method"]) == {"sgd", "gd+noise"}
    np.testing.assert_allclose(t["temperature"], t["lr"] / t["batch_size"])
    s = t[(t["method"] == "sgd") & (t["lr"] == 0.05)].set_index("batch_size")["hessian_top"]
    assert s[1] < 0.95 * s[16]
    g = t[(t["method"] == "gd+noise") & (t["lr"] == 0.05)].set_index("batch_size")["hessian_top"]
    assert g[1] > 1.1 * s[1]
    assert plot_langevin(t.dropna(), tmp_path / "langevin.png").stat().st_size > 1000


@pytest.mark.parametrize("name,bad", [("edge-of-stability", ["--steps", "0"]), ("spectral-bias", ["--epochs", "0"]),
                                      ("langevin", ["--width", "0"]), ("adam-weight-decay", ["--widths", "4,x"])])
def test_demo_command_quick_writes_its_files_and_a_bad_override_writes_nothing(name, bad, tmp_path, capsys):
    from pyireg.cli import main
    out = tmp_path / "d"
    assert main(["demo", name, "--quick", "--out", str(out), "--threads", "1", "--quiet"]) == 0
    for ext in ("csv", "json", "png"):
        assert (out / f"{name}.{ext}").stat().st_size > 0
    capsys.readouterr()
    never = tmp_path / "never"
    with pytest.raises(SystemExit) as e:
        main(["demo", name, "--quick", *bad, "--out", str(never)])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 2 and err[0].startswith(f"usage: pyireg demo {name} "), err
    assert bad[0] in err[1] and not never.exists(), err
