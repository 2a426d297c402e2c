"""Figures: the plotted data are the summaries (checked on the line data of the axes), no panel is
empty, the zoomed axis shows percentage-point differences, titles come from the data and
settings, incomplete sweeps are labelled, and plot_results takes a SweepResult, a DataFrame or a
dict of them (directories are read by load_source: the plots never import the experiments)."""
import numpy as np
import pytest

from pyireg import _core
from pyireg import data as D
from pyireg.cli import main
from pyireg.experiments import load_results, summarize, sweep
from pyireg.experiments.results import load_source
from pyireg.plots import plot_results, results_figure, results_table, zoom_limits


@pytest.fixture(autouse=True)
def _one_thread():
    """Small models: one native thread avoids waiting at parallel barriers on a busy machine (the
    conftest fixture restores the setting); results do not depend on the thread count."""
    _core.set_num_threads(1)


@pytest.fixture(scope="module")
def figure2(tmp_path_factory):
    out = tmp_path_factory.mktemp("fig") / "f2"
    threads = _core.get_num_threads()
    try:
        assert main(["reproduce", "figure2", "--widths", "2,8,32", "--epochs", "2", "--seeds", "0,1",
                     "--weight-decay", "0,1e-3", "--label-noise", "0.1", "--out", str(out), "--quiet",
                     "--threads", "1"]) == 0
    finally:
        _core.set_num_threads(threads)
    return out


def _fig(path):
    rows, meta = load_source(path)
    return results_figure(rows, meta)


def _table(path):
    rows, meta = load_source(path)
    return results_table(rows, meta)


def _lines(ax):
    return {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}


def test_figure2_panels_hold_the_summaries(figure2):
    fig = _fig(figure2)
    axes = fig.get_axes()
    assert len(axes) == 6
    for ax in axes:                                     # no empty panel
        assert ax.axison and _lines(ax), ax.get_title()
    for row, key in enumerate(("original", "censored", "censored_noise")):
        left, right = axes[2 * row], axes[2 * row + 1]
        summ = summarize(load_results(figure2 / key).history)
        base = summ.xs(0.0, level="weight_decay").xs(1.0, level="lr_scale")
        got = _lines(left)
        # with several weight decays the final and early-stopped lines are weight decay 0's, and say so
        wd = ", weight decay 0" if key == "original" else ""
        for label, col in (("training (final)" + wd, "train_error_final"), ("test (final)" + wd, "test_error_final"),
                           ("test (early stopping)" + wd, "test_error_es")):
            np.testing.assert_array_equal(got[label].get_xdata(), base.index.to_numpy())
            np.testing.assert_allclose(got[label].get_ydata(), base[col + "_mean"].to_numpy())
        chosen = "test, weight decay chosen by validation (early stopping)"
        assert (chosen in got) == (key == "original")
        if key == "original":
            ch = summ.xs("chosen", level="weight_decay").xs(1.0, level="lr_scale")
            np.testing.assert_allclose(got[chosen].get_ydata(), ch["test_error_es_mean"].to_numpy())
        # the zoomed panel: test curves only, on an axis narrower than the full one, around the best
        zoom = _lines(right)
        assert "training (final)" + wd not in zoom and set(zoom) <= set(got)
        lo, hi = right.get_ylim()
        best = base["test_error_final_mean"].min()
        assert lo <= best <= hi and (hi - lo) < (left.get_ylim()[1] - left.get_ylim()[0])
        assert right.get_xscale() == "log" and left.get_xscale() == "log"


def test_titles_come_from_the_data_and_settings(figure2):
    axes = _fig(figure2).get_axes()
    titles = [" ".join(axes[i].get_title(loc="left").split()) for i in (0, 2, 4)]    # long titles are wrapped
    assert all(t.startswith("mnist5k: ") for t in titles)
    assert "original labels" in titles[0] and "weight decay from {0, 0.001}" in titles[0]
    assert "censored labels (H0 = 4 teacher" in titles[1] and "label noise" not in titles[1]
    assert "+ 10% label noise (drawn per repetition)" in titles[2]       # the actual noise level
    assert all("2,000 train / 2,000 validation, 2 epochs, 2 repetitions" in t for t in titles)
    assert "10% label noise" in _table(figure2)
    assert "| H | train (final, wd 0) | test (final, wd 0) | test (early stop, wd 0) |" in _table(figure2)


def test_zoom_shows_percentage_point_differences():
    values = [0.8, 0.3, 0.12, 0.10, 0.09, 0.095]          # test errors as in the README's Figure 2 discussion
    lo, hi = zoom_limits(values)
    assert lo < 0.09 and hi >= 0.12
    assert (0.10 - 0.09) / (hi - lo) > 0.1                  # a point is at least a tenth of the axis height
    assert (0.10 - 0.09) / 0.8 < 0.02                       # on the full axis it is not
    assert zoom_limits([0.0, 0.2]) == (0.0, pytest.approx(0.21))


def test_plot_results_takes_a_result_a_frame_or_a_dict(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 5))
    ds = D.from_arrays(X, (X[:, 0] > 0).astype(int), n_val=30, n_test=30, name="blobs")
    res = sweep(ds, [2, 8], seeds=[0, 1], epochs=2, batch_size=30, out=tmp_path / "s", progress=False)
    rows, meta = load_source(tmp_path / "s")
    png = plot_results(rows, tmp_path / "s" / "sweep.png", meta=meta)
    assert png == tmp_path / "s" / "sweep.png" and png.read_bytes()[:4] == b"\x89PNG"
    assert plot_results(res, tmp_path / "r.png") == tmp_path / "r.png"
    for source in (res, res.history, {"mine": res}):
        fig = plot_results(source)                          # in memory: the Figure
        got = _lines(fig.get_axes()[0])
        np.testing.assert_allclose(got["test (final)"].get_ydata(),
                                   summarize(res.history).xs(0.0, level="weight_decay")
                                   .xs(1.0, level="lr_scale")["test_error_final_mean"].to_numpy())
    assert results_figure(res).get_axes()[0].get_title(loc="left").startswith("blobs: original labels")
    from matplotlib.figure import Figure
    assert isinstance(res.plot(), Figure) and res.plot(tmp_path / "m.png") == tmp_path / "m.png"   # notebooks
    with pytest.raises(TypeError, match="source: expected a SweepResult"):
        plot_results(42)
    with pytest.raises(TypeError, match="source: .* is a path; read it first"):
        plot_results(tmp_path / "s")
    with pytest.raises(FileNotFoundError, match="source: .* is not a directory"):
        load_source(tmp_path / "nothing")


def test_plots_never_import_the_experiments():
    """The plots draw results; reading directories is the experiments' (no import circle)."""
    import ast
    import inspect

    import pyireg.plots
    import pyireg.summary
    for mod in (pyireg.plots, pyireg.summary):
        tree = ast.parse(inspect.getsource(mod))
        names = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        names += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        assert names and not any("experiments" in m or "distributed" in m for m in names), (mod.__name__, names)


def test_incomplete_sweeps_are_labelled(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(150, 5))

    class Stop(Exception):
        pass

    def stop(rep, epoch):
        if (rep, epoch) == (1, 1):
            raise Stop
    with pytest.raises(Stop):
        sweep((X, (X[:, 0] > 0).astype(int)), [2, 8], seeds=[0, 1, 2], epochs=3, batch_size=30,
              out=tmp_path / "s", progress=False, on_epoch=stop)
    title = " ".join(_fig(tmp_path / "s").get_axes()[0].get_title(loc="left").split())
    assert "INCOMPLETE: 1 of 3 repetitions finished, seed 1 at epoch 1 of 3" in title
    assert "INCOMPLETE" in _table(tmp_path / "s")
    assert main(["plot", str(tmp_path / "s"), "--output", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").exists()


def test_reproduce_figure1_and_its_figure(tmp_path):
    out = tmp_path / "f1"
    assert main(["reproduce", "figure1", "--widths", "2,16", "--epochs", "2", "--out", str(out), "--quiet"]) == 0
    h = load_results(out / "original").history
    assert sorted(h.width.unique()) == [2, 16] and h.epoch.max() == 2 and h.repetition.unique().tolist() == [0]
    assert not (out / "censored").exists()
    fig = _fig(out)
    assert len(fig.get_axes()) == 2 and all(_lines(ax) for ax in fig.get_axes())
    assert fig._suptitle.get_text().startswith("Figure 1")
    assert (out / "figure1.png").read_bytes()[:4] == b"\x89PNG"


def test_table_notes_name_the_block_widths_and_weight_decays_of_flagged_networks():
    """Networks at chance or diverged are noted under their own lr-scale block, counted in that
    block only, with their widths and weight decays."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 6))
    ds = D.from_arrays(X, (X[:, 0] > 0).astype(int), n_val=20, n_test=20)
    h = sweep(ds, [1, 3], lr_scales=[1.0, 1e-3], weight_decays=[0.0, 1e-3], epochs=2, batch_size=20,
              progress=False).history.copy()
    h["at_chance"] = h["diverged"] = False
    last = h["epoch"] == 2
    h.loc[last & (h.lr_scale == 1.0) & (h.width == 3) & (h.weight_decay == 1e-3), "at_chance"] = True
    h.loc[last & (h.lr_scale == 1e-3) & (h.width == 1) & (h.weight_decay == 0.0), "diverged"] = True
    small, one = results_table(h).split("lr scale 1**")                 # blocks by lr scale: 0.001, then 1
    assert "2 epochs, 1 repetition" in small
    one_epoch = h[h.epoch == 1].copy()
    one_epoch[["at_chance", "diverged"]] = False
    assert "1 epoch, 1 repetition" in results_table(one_epoch)          # not "1 epochs"
    assert "1 network(s) ended at chance (training loss ln k): widths 3; weight decay 0.001" in one
    assert "diverged" not in one
    assert "1 network(s) diverged (a loss became NaN or inf" in small and "widths 1; weight decay 0;" in small
    assert "ended at chance" not in small


def test_the_figure_file_is_checked_before_drawing_and_its_real_name_returned(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 6))
    ds = D.from_arrays(X, (X[:, 0] > 0).astype(int), n_val=20, n_test=20)
    res = sweep(ds, [1, 3], epochs=1, batch_size=20, progress=False)
    assert plot_results(res, tmp_path / "fig") == tmp_path / "fig.png" and (tmp_path / "fig.png").is_file()
    assert plot_results(res, str(tmp_path / "f.svg")) == tmp_path / "f.svg"
    for bad, exc, match in ((tmp_path / "f.xyz", ValueError, r"out_file: f.xyz has the suffix .xyz, not one of"),
                            (tmp_path / "no" / "f.png", FileNotFoundError, "out_file: the folder .* does not exist"),
                            (tmp_path, IsADirectoryError, "out_file: .* is a directory")):
        with pytest.raises(exc, match=match):
            plot_results(res, bad)
    h = res.history.copy()
    h.loc[0, "val_error"] = np.nan
    for call in (lambda: results_table(h), lambda: plot_results(h, tmp_path / "h.png")):
        with pytest.raises(ValueError, match=r"source: the history's val_error holds NaN or inf \(first in row 0\)"):
            call()
    with pytest.raises(ValueError, match=r"history: val_error holds NaN or inf \(first in row 0\)"):
        summarize(h)
    out = tmp_path / "s"
    sweep(ds, [1, 3], epochs=1, batch_size=20, progress=False, out=out)
    assert main(["plot", str(out), "--output", str(tmp_path / "g")]) == 0
    assert f"wrote {tmp_path / 'g.png'}" in capsys.readouterr().out
    assert main(["plot", str(out), "--output", str(tmp_path / "g.xyz")]) == 2
    assert "--output: g.xyz has the suffix .xyz" in capsys.readouterr().err


def test_an_interrupted_figure_is_drawn_as_incomplete(figure2, tmp_path):
    """reproduce writes figure.json after its last row: without it, the rows there are drawn
    and tabulated under a note that the figure is incomplete, not as a plain sweep."""
    import shutil
    part = tmp_path / "part"
    shutil.copytree(figure2, part)
    (part / "figure.json").unlink()
    shutil.rmtree(part / "censored_noise")
    rows, meta = load_source(part)
    assert list(rows) == ["original", "censored"]
    assert meta["incomplete"].startswith(f"INCOMPLETE: {part} has no figure.json") and \
        "rows with results: original, censored" in meta["incomplete"]
    assert results_table(rows, meta).startswith("**INCOMPLETE: ")
    assert "INCOMPLETE" in results_figure(rows, meta)._suptitle.get_text()
