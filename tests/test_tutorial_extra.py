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


def test_the_target_components_are_orthogonal_on_the_grid():
    x = -1.0 + 2.0 * np.arange(64) / 64
    B = np.stack([spectral_target(x, [f]) for f in (1, 3, 5, 9)], 1)
    G = B.T @ B
    np.testing.assert_allclose(G, np.diag(np.diag(G)), atol=1e-10)


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
