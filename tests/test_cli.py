"""The command line: one-line errors that say what to do, defaults in --help, --version,
python -m pyireg, repetitions and seeds, range checks, output paths checked before long runs,
your own data with --data, progress lines off a terminal."""
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import pyireg
from pyireg import _core
from pyireg import data as D
from pyireg.cli import main

@pytest.fixture(autouse=True)
def _one_thread():
    """Small models: one native thread avoids waiting at parallel barriers on a busy machine (the
    conftest fixture restores the setting); results do not depend on the thread count."""
    _core.set_num_threads(1)


SMALL = ["--n-train", "200", "--n-val", "100", "--n-test", "100", "--epochs", "2", "--quiet"]


def _one_line_error(capsys, argv, rc=2):
    assert main(argv) == rc
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def _parse_error(capsys, argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    # the subcommand's usage line, then the error in one line
    assert len(err) == 2 and err[0].startswith("usage: pyireg") and "--help" in err[1], err
    return err[1]


def test_version_and_python_m_pyireg(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"pyireg {pyireg.__version__}"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    r = subprocess.run([sys.executable, "-m", "pyireg", "--version"], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and r.stdout.strip() == f"pyireg {pyireg.__version__}"
    r = subprocess.run([sys.executable, "-m", "pyireg", "sweep", "--out", "x", "--momentum", "1.5"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "--momentum: expected a number in [0, 1), got 1.5" in r.stderr


def test_help_shows_the_defaults_and_one_epoch_default(capsys):
    helps = {}
    for cmd in ("sweep", "reproduce", "bench", "theorem1", "convex"):
        with pytest.raises(SystemExit):
            main([cmd, "figure1", "--help"] if cmd == "reproduce" else [cmd, "--help"])
        helps[cmd] = " ".join(capsys.readouterr().out.split())
    for cmd in ("sweep", "reproduce"):
        assert "--epochs EPOCHS epochs of training, as in the paper (default: 60)" in helps[cmd]
        assert "--keep-checkpoints {resume,final,all}" in helps[cmd] and "(default: resume)" in helps[cmd]
    s = helps["sweep"]
    for text in ("(default: pow2:1024)", "(default: 0.1)", "(default: 0.99)", "(default: 0.5)", "(default: 0.02)",
                 "(default: 0.9)", "(default: 100)", "(default: mnist5k)", "(default: float32)",
                 "seed of the shuffle before splitting (default: 0)",          # a default of 0 is shown too
                 "over this many epochs (0: none) (default: 0)"):
        assert text in s, text
    assert "(default: 3)" in helps["bench"] and "(default: 2000 for k >= 2" in helps["theorem1"]
    import inspect
    assert inspect.signature(pyireg.sweep).parameters["epochs"].default == 60
    assert "(default: None)" not in " ".join(helps.values())


@pytest.mark.parametrize("argv,match", [
    (["sweep", "--out", "x", "--momentum", "1.5"], r"--momentum: expected a number in \[0, 1\), got 1.5"),
    (["sweep", "--out", "x", "--momentum-max", "1"], r"--momentum-max: expected a number in \[0, 1\)"),
    (["sweep", "--out", "x", "--threads", "0"], "--threads: expected an integer >= 1, got 0"),
    (["sweep", "--out", "x", "--censor", "0"], "--censor: expected an integer >= 1, got 0"),
    (["sweep", "--out", "x", "--label-noise", "1"], r"--label-noise: expected a number in \[0, 1\), got 1"),
    (["sweep", "--out", "x", "--lr", "0"], r"--lr: expected a number > 0, got 0"),
    (["sweep", "--out", "x", "--lr-decay", "1.5"], r"--lr-decay: expected a number in \(0, 1\]"),
    (["sweep", "--out", "x", "--widths", "pow2:1000"], "pow2:1000: 1000 is not a power of two; the sweep would stop "
                                                        "at 512 \\(write pow2:512 or pow2:1024\\)"),
    (["sweep", "--out", "x", "--widths", "8:2"], "8:2: expected FIRST:LAST with 1 <= FIRST <= LAST"),
    (["sweep", "--out", "x", "--widths", "a,b"], "expected widths like"),
    (["sweep", "--out", "x", "--widths", "0,4"], "expected positive widths"),
    (["sweep", "--out", "x", "--widths", "1,"], "expected widths like"),
    (["reproduce", "sgd-vs-cg", "--seed", "3", "--seeds", "1,2"], "argument --seeds: not allowed with argument --seed"),
    (["reproduce", "pathsgd", "--seeds", "1,2", "--seed", "3"], "argument --seed: not allowed with argument --seeds"),
    (["sweep", "--out", "x", "--widths", "1,,2"], "expected widths like"),
    (["sweep", "--out", "x", "--widths", "1:1000000000"], "1:1000000000: 1,000,000,000 widths; a range holds at most "
     "10,000,000"),
    (["sweep", "--out", "x", "--reps", "0"], "--reps: expected an integer >= 1"),
    (["sweep", "--out", "x", "--seeds", "1,1"], "--seeds: expected distinct seeds"),
    (["sweep", "--out", "x", "--seeds", "-1"], "--seeds: expected an integer >= 0"),
    (["sweep", "--out", "x", "--reps", "3", "--seeds", "0,1"], "not allowed with argument"),
    (["sweep", "--out", "x", "--weight-decay=0,-1e-3"], "--weight-decay: expected a number >= 0, got -1e-3"),
    (["sweep", "--out", "x", "--dataset", "mnist5k", "--data", "f.npz"], "not allowed with argument"),
    (["bench", "--max-seconds", "0"], r"--max-seconds: expected a number > 0"),
    (["sweep"], "the following arguments are required: --out"),
])
def test_range_options_are_validated_in_one_line(capsys, argv, match):
    import re
    assert re.search(match, _parse_error(capsys, argv))


def test_ordinary_errors_are_one_line_saying_what_to_do(capsys, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    err = _one_line_error(capsys, ["sweep", "--out", str(blocker / "sub"), *SMALL])
    assert "out: cannot create" in err and "is a file, not a directory" in err
    err = _one_line_error(capsys, ["sweep", "--out", str(tmp_path / "m"), "--widths", "1:100000", *SMALL])
    assert "widths: this sweep needs about" in err and "TiB" in err and not (tmp_path / "m").exists()
    monkeypatch.setitem(sys.modules, "sklearn", None)                 # scikit-learn not installed
    monkeypatch.delitem(sys.modules, "sklearn.datasets", raising=False)
    err = _one_line_error(capsys, ["sweep", "--dataset", "digits", "--out", str(tmp_path / "d"), *SMALL])
    assert "needs the Python package 'scikit-learn'" in err and 'pip install "pyireg[experiments]"' in err
    err = _one_line_error(capsys, ["sweep", "--dataset", "mnist", "--data-dir", str(tmp_path / "none"),
                                   "--out", str(tmp_path / "x"), "--quiet"])
    assert "not a directory" in err
    err = _one_line_error(capsys, ["sweep", "--data", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "y")])
    assert "missing.csv: no such file" in err


def test_read_only_output_folder(capsys, tmp_path, monkeypatch):
    import errno
    import tempfile

    def read_only(*a, **k):                      # as on a read-only mount (root ignores chmod, so simulated)
        raise OSError(errno.EROFS, "Read-only file system")
    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    err = _one_line_error(capsys, ["sweep", "--out", str(tmp_path / "s"), *SMALL])
    assert f"out: cannot write in {tmp_path} (Read-only file system); choose another directory" in err
    assert not (tmp_path / "s").exists()
    err = _one_line_error(capsys, ["plot", str(tmp_path), "--output", str(tmp_path / "p.png")])
    assert "--output: cannot write in" in err


def test_output_paths_are_checked_before_long_runs(capsys, tmp_path, monkeypatch):
    from pyireg import bench
    monkeypatch.setattr(bench, "run", lambda *a, **k: pytest.fail("the benchmark ran before --json was checked"))
    err = _one_line_error(capsys, ["bench", "--json", str(tmp_path / "no-such-folder" / "b.json")])
    assert "--json: the folder" in err and "does not exist" in err
    err = _one_line_error(capsys, ["bench", "--json", str(tmp_path)])
    assert "is a directory" in err
    out = tmp_path / "s"
    assert main(["sweep", "--widths", "2", "--out", str(out), *SMALL]) == 0
    capsys.readouterr()
    for fn in ("censor", "censor_entire"):
        monkeypatch.setattr(f"pyireg.experiments.teacher.{fn}",
                            lambda *a, **k: pytest.fail("censoring ran before the output was checked"))
    err = _one_line_error(capsys, ["sweep", "--widths", "2", "--censor", "4", "--out", str(out), *SMALL])
    assert "already holds a sweep; pass resume=True (--resume)" in err
    monkeypatch.setattr("pyireg.experiments.paper.reproduce_figure2", lambda *a, **k: pytest.fail("ran"))
    fig = tmp_path / "fig"
    (fig / "censored").mkdir(parents=True)
    (fig / "censored" / "config.json").write_text("{}")
    err = _one_line_error(capsys, ["reproduce", "figure2", "--out", str(fig), "--quiet"])
    assert "censored already holds a sweep" in err


def test_reps_and_seeds(capsys, tmp_path):
    assert main(["sweep", "--widths", "2", "--reps", "3", "--out", str(tmp_path / "r"), *SMALL]) == 0
    out = capsys.readouterr().out
    assert "3 repetitions (seeds 0,1,2)" in out
    assert json.loads((tmp_path / "r" / "config.json").read_text())["seeds"] == [0, 1, 2]
    assert main(["sweep", "--widths", "2", "--seeds", "5", "--out", str(tmp_path / "s"), *SMALL]) == 0
    out = capsys.readouterr().out
    assert "1 repetition (seed 5; for 5 repetitions use --reps 5)" in out
    assert json.loads((tmp_path / "s" / "config.json").read_text())["seeds"] == [5]


def test_checkpoint_every_from_the_command_line(capsys, tmp_path, monkeypatch):
    out = tmp_path / "k"
    assert main(["sweep", "--widths", "2", "--checkpoint-every", "3", "--out", str(out), *SMALL]) == 0
    assert json.loads((out / "config.json").read_text())["checkpoint_every"] == 3
    err = _parse_error(capsys, ["sweep", "--widths", "2", "--checkpoint-every", "0", "--out", str(tmp_path / "z"),
                                *SMALL])
    assert "--checkpoint-every: expected an integer >= 1, got 0" in err and not (tmp_path / "z").exists()
    seen = {}
    monkeypatch.setattr("pyireg.experiments.paper.reproduce_figure2", lambda out, **kw: seen.update(kw))
    monkeypatch.setattr("pyireg.experiments.paper.check_outputs", lambda *a: None)
    main(["reproduce", "figure2", "--checkpoint-every", "5", "--out", str(tmp_path / "f"), "--quiet"])
    assert seen["checkpoint_every"] == 5


def test_a_sweep_over_the_memory_limit_names_the_option_and_the_way_out(capsys, tmp_path):
    err = _one_line_error(capsys, ["sweep", "--widths", "1:64", "--max-memory", "1K", "--out", str(tmp_path / "m"),
                                   *SMALL])
    assert "is the limit (max_memory, --max-memory)" in err and "or raise the limit (0: no check)" in err
    assert not (tmp_path / "m").exists()


def test_resume_on_a_fresh_or_foreign_directory_says_what_it_does(capsys, tmp_path):
    out = tmp_path / "typo"
    assert main(["sweep", "--widths", "2", "--epochs", "1", "--resume", "--out", str(out), *SMALL[:-3], "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert f"--resume: nothing saved in {out} yet; starting a new sweep there" in printed
    assert "1 epoch ->" in printed                                        # not "1 epochs"
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "config.json").write_text('{"name": "my project"}')
    err = _one_line_error(capsys, ["sweep", "--widths", "2", "--resume", "--out", str(foreign), *SMALL])
    assert "is not the configuration of a pyireg sweep (no format or sweep id)" in err
    assert (foreign / "config.json").read_text() == '{"name": "my project"}'


def test_reproduce_figure1_refuses_figure2_options(capsys, tmp_path):
    for opt in (["--weight-decay", "0,1e-3"], ["--label-noise", "0.1"]):
        err = _one_line_error(capsys, ["reproduce", "figure1", *opt, "--out", str(tmp_path / "f1"), "--quiet"])
        assert f"{opt[0]}: figure1 is the paper's Figure 1" in err
    assert not (tmp_path / "f1").exists()


@pytest.mark.parametrize("kind", ["npz", "csv", "parquet"])
def test_sweep_with_your_own_data_file(capsys, tmp_path, kind):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 4))
    y = np.array(["low", "mid", "high"])[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)]
    path = tmp_path / f"mine.{kind}"
    if kind == "npz":
        np.savez(path, X=X, y=y)
        extra = []
    else:
        df = pd.DataFrame(X, columns=["a", "b", "c", "d"]).assign(species=y)
        df.to_csv(path, index=False) if kind == "csv" else df.to_parquet(path)
        extra = ["--label-column", "species"]
    out = tmp_path / "out"
    assert main(["sweep", "--data", str(path), *extra, "--widths", "2,8", "--epochs", "2", "--batch-size", "30",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "sweep mine (90 train / 30 validation / 30 test, d=4, k=3)" in printed and "| 8 |" in printed
    assert main(["sweep", "--data", str(path), *extra, "--widths", "2,8", "--epochs", "2", "--batch-size", "30",
                 "--out", str(tmp_path / "quiet"), "--quiet"]) == 0
    assert "| 8 |" not in capsys.readouterr().out             # --quiet: no table
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["dataset"]["classes"] == ["high", "low", "mid"] and cfg["dataset"]["name"] == "mine"
    again = pyireg.sweep(D.load_file(path, label_column="species" if extra else "label"), [2, 8], epochs=2,
                         batch_size=30, progress=False)
    cols = [c for c in again.history.columns if c != "train_seconds"]
    pd.testing.assert_frame_equal(pyireg.load_results(out).history[cols], again.history[cols])


def test_progress_lines_off_a_terminal_show_validation_error(capsys, tmp_path):
    assert main(["sweep", "--widths", "2,8", "--reps", "2", "--n-train", "200", "--n-val", "100", "--n-test", "100",
                 "--epochs", "2", "--out", str(tmp_path / "p")]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and err.count("best val error") == 2 and "test" not in err


def test_warnings_are_one_line(capsys, tmp_path):
    imgs, labels = D.core._mnist5k()
    pick = np.random.default_rng(0).permutation(len(labels))[:400]
    np.savez(tmp_path / "raw.npz", X=D.downsample(imgs[pick], 10), y=labels[pick])
    assert main(["sweep", "--data", str(tmp_path / "raw.npz"), "--no-standardize", "--widths", "1,4", "--epochs",
                 "2", "--out", str(tmp_path / "w"), "--quiet"]) == 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("pyireg: warning:") and "not standardized" in err and len(err.splitlines()) == 1


def test_demo_command_runs_a_quick_demonstration(tmp_path, capsys):
    from pyireg import cli
    assert cli.main(["demo", "min-norm", "--quick", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "min-norm.png").exists() and (tmp_path / "min-norm.csv").exists()
    with pytest.raises(SystemExit) as e:
        cli.main(["demo", "--help"])
    assert e.value.code == 0 and "early-stopping" in capsys.readouterr().out


def test_reproduce_hands_the_thesis_experiments_their_own_options(capsys):
    with pytest.raises(SystemExit) as e:
        main(["reproduce", "pathsgd", "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "usage: pyireg reproduce" in out and "--seed" in out
    with pytest.raises(SystemExit) as e:
        main(["sweep", "--out", "x", "--measures", "pac_bayes"])
    assert e.value.code == 2 and "perturbs every network" in capsys.readouterr().err


def test_thesis_experiments_take_global_options_and_report_errors_in_one_line(capsys, tmp_path):
    err = _parse_error(capsys, ["reproduce", "measures", "--dataset", "bogus", "--widths", "1", "--epochs", "1",
                                "--out", str(tmp_path / "m")])
    assert "--dataset: invalid choice: 'bogus'" in err
    for argv in (["reproduce", "measures", "--epochs", "0"], ["reproduce", "pathsgd", "--epochs", "0"],
                 ["reproduce", "figure1", "--epochs", "0"], ["demo", "early-stopping", "--epochs", "0"]):
        err = _parse_error(capsys, [*argv, "--out", str(tmp_path / "never")])
        assert "--epochs: expected an integer >= 1, got 0" in err
    assert not (tmp_path / "never").exists() and not (tmp_path / "m").exists()
    with pytest.raises(SystemExit):
        main(["reproduce", "cost"])          # the cost study is a benchmark (benchmarks/measures_cost.py)


def test_thesis_experiments_read_widths_like_every_command(capsys, tmp_path):
    err = _parse_error(capsys, ["reproduce", "measures", "--widths", "1:x", "--out", str(tmp_path / "m")])
    assert "--widths: expected widths like '1,2,4', '1:1024' or 'pow2:4096', got '1:x'" in err


def test_a_thesis_experiment_runs_from_the_command_table(capsys, tmp_path):
    from pyireg.experiments import load_results
    assert main(["reproduce", "pathsgd", "--widths", "2,8", "--epochs", "1", "--lrs", "0.1", "--seed", "0",
                 "--out", str(tmp_path / "p"), "--quiet", "--threads", "1"]) == 0
    res = load_results(tmp_path / "p" / "path_sgd-unbalanced")
    assert res.complete and res.config["run"]["command"].startswith("pyireg reproduce pathsgd --widths 2,8")


def test_squared_loss_with_a_margin_fails_in_one_line_and_creates_nothing(capsys, tmp_path):
    out = tmp_path / "sq"
    for measures in ("margin", "path_l2,fro_margin"):
        err = _one_line_error(capsys, ["sweep", "--loss", "squared", "--measures", measures, "--widths", "2",
                                       "--out", str(out), *SMALL])
        assert "needs class labels" in err
        assert not out.exists()
    # "all" with the squared loss records what the loss allows, margins left out
    assert main(["sweep", "--loss", "squared", "--measures", "all", "--widths", "2", "--out", str(out), *SMALL]) == 0
    cols = load_results_columns(out)
    assert "path_l2" in cols and "margin" not in cols and "overparam_bound" not in cols
    err = _parse_error(capsys, ["sweep", "--epochs", "0", "--widths", "2", "--out", str(tmp_path / "e0")])
    assert "--epochs: expected an integer >= 1, got 0" in err and not (tmp_path / "e0").exists()


def load_results_columns(out):
    from pyireg.experiments import load_results
    return set(load_results(out).history.columns)


def test_device_cuda_is_refused_in_one_line_before_anything(capsys, tmp_path):
    err = _one_line_error(capsys, ["sweep", "--device", "cuda", "--widths", "2", "--out", str(tmp_path / "g"), *SMALL])
    assert "device: " in err and "'cpu'" in err and not (tmp_path / "g").exists()


@pytest.mark.parametrize("argv, match", [
    (["bench", "--socket-bandwidth", "300"], "--socket-bandwidth: only with --roofline"),
    (["bench", "--predict-threads", "8"], "--predict-threads: only with --roofline"),
    (["bench", "--roofline", "--scaling"], "--roofline: not with --scaling"),
])
def test_roofline_options_need_roofline(capsys, argv, match):
    assert match in _one_line_error(capsys, argv)


def test_an_interrupted_command_says_how_to_go_on_and_pathsgd_resumes(capsys, tmp_path, monkeypatch):
    """After Ctrl-C the message names --resume only for commands that have it: reproduce pathsgd
    (and measures) now do, and resume to the uninterrupted table; a demo says it starts over."""
    from pyireg.experiments import thesis, tutorial
    argv = ["reproduce", "pathsgd", "--widths", "2,8", "--epochs", "2", "--lrs", "0.1", "--seeds", "0", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "whole")]) == 0
    real, calls = thesis._quiet_sweep, []

    def interrupted(*a, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **kw)
    monkeypatch.setattr(thesis, "_quiet_sweep", interrupted)
    capsys.readouterr()
    assert main([*argv, "--out", str(tmp_path / "cut")]) == 130
    assert "rerun the same command with --resume to continue" in capsys.readouterr().err
    monkeypatch.setattr(thesis, "_quiet_sweep", real)
    assert main([*argv, "--out", str(tmp_path / "cut"), "--resume"]) == 0
    whole, cut = (pd.read_csv(tmp_path / d / "results.csv") for d in ("whole", "cut"))
    assert {"test_final", "test_early"} <= set(whole.columns) and len(whole) == 2 * 2 * 2
    pd.testing.assert_frame_equal(whole, cut)

    def stop(*a, **kw):
        raise KeyboardInterrupt
    monkeypatch.setattr(tutorial, "run", stop)
    capsys.readouterr()
    assert main(["demo", "learning-rate", "--quick", "--out", str(tmp_path / "demo")]) == 130
    err = capsys.readouterr().err
    assert "this command does not resume: rerun it" in err and "--resume" not in err


@pytest.mark.parametrize("name", ["sgd-vs-cg", "measures", "pathsgd"])
def test_a_bad_figure_suffix_is_refused_before_training(capsys, tmp_path, name):
    """--figure x.txt trained everything and then failed in matplotlib, leaving the output."""
    out = tmp_path / "o"
    err = _one_line_error(capsys, ["reproduce", name, "--out", str(out), "--figure", str(tmp_path / "x.txt"),
                                   "--quiet"])
    assert err.startswith("pyireg reproduce: error: --figure: x.txt has the suffix .txt, not one of the figure")
    assert not out.exists() and not (tmp_path / "x.txt").exists()


def test_a_sweep_refuses_a_repeated_width(capsys, tmp_path):
    """--widths 1,1,2 ran, and the summaries took the two width-1 networks for two repetitions."""
    out = tmp_path / "dup"
    err = _one_line_error(capsys, ["sweep", "--widths", "1,1,2", "--out", str(out), *SMALL])
    assert "widths: expected distinct widths, got 1 twice" in err and not out.exists()


def test_theorem1_and_convex_leave_no_folder_on_a_data_error(capsys, tmp_path):
    for argv in (["theorem1", "--quick", "--n", "100000"], ["convex", "--n", "100000"]):
        out = tmp_path / argv[0]
        err = _one_line_error(capsys, [*argv, "--out", str(out)])
        assert "samples" in err and not out.exists()


def test_a_sweep_and_a_reproduction_do_not_share_a_directory(capsys, tmp_path):
    """reproduce figure1 wrote figure.json and original/ into a sweep's directory (pyireg plot then
    drew the figure, not the sweep), and sweep --resume took a figure's directory for a fresh
    sweep; each is refused now, naming the other kind, before anything is written."""
    sw = tmp_path / "sw"
    assert main(["sweep", "--widths", "1,2", "--out", str(sw), *SMALL]) == 0
    before = sorted(p.name for p in sw.iterdir())
    fig = ["reproduce", "figure1", "--widths", "1,2", "--epochs", "1", "--quiet"]
    err = _one_line_error(capsys, [*fig, "--out", str(sw)])
    assert "holds a sweep (config.json), not a reproduction of figure1" in err
    assert sorted(p.name for p in sw.iterdir()) == before
    f1 = tmp_path / "f1"
    assert main([*fig, "--out", str(f1)]) == 0
    for resume in ([], ["--resume"]):
        err = _one_line_error(capsys, ["sweep", "--widths", "1,2", "--out", str(f1), *resume, *SMALL])
        assert "holds the reproduction of figure1, not a sweep" in err
    (f1 / "figure.json").unlink()                         # as an interrupted reproduction leaves it
    err = _one_line_error(capsys, ["sweep", "--widths", "1,2", "--out", str(f1), *SMALL])
    assert "holds the sweeps of a reproduction (original), not a sweep" in err
    assert not (f1 / "config.json").exists()
    assert main([*fig, "--out", str(f1), "--resume"]) == 0     # its own reproduction still resumes
    err = _one_line_error(capsys, ["reproduce", "figure2", "--widths", "1,2", "--epochs", "1", "--quiet",
                                   "--out", str(f1)])
    assert "holds the reproduction of figure1, not of figure2" in err
    # the thesis's experiments record theirs in run.json; their sweeps' names tell them apart unfinished
    th = tmp_path / "th"
    assert main(["reproduce", "pathsgd", "--widths", "2", "--epochs", "1", "--lrs", "0.1", "--seeds", "0",
                 "--quiet", "--out", str(th)]) == 0
    measures = ["reproduce", "measures", "--widths", "2", "--epochs", "1", "--random-epochs", "1", "--seeds", "0",
                "--samples", "1", "--quiet", "--out", str(th)]
    assert "holds the reproduction of pathsgd, not of measures" in _one_line_error(capsys, measures)
    (th / "run.json").unlink()
    assert "holds sweeps of another experiment (path_sgd-standard, path_sgd-unbalanced, sgd-standard, ...)" in \
        _one_line_error(capsys, measures)


def test_demos_that_take_a_dataset_take_its_data_dir(capsys, tmp_path):
    """demo learning-rate --dataset mnist asked for --data-dir, which the demos did not have."""
    missing = tmp_path / "none"
    for demo in ("learning-rate", "init-scale", "batch-size", "early-stopping"):
        err = _one_line_error(capsys, ["demo", demo, "--quick", "--dataset", "mnist", "--data-dir", str(missing),
                                       "--out", str(tmp_path / demo)])
        assert str(missing) in err and not (tmp_path / demo).exists()


def test_bench_times_another_simd_target_and_restores_the_active_one(capsys, tmp_path):
    """bench --simd generic runs the native rows on that target (the header and the JSON say so)
    and leaves the process's own target as it was; a target this CPU lacks is one line."""
    active = _core.build_config()["simd_active"]
    path = tmp_path / "b.json"
    assert main(["bench", "--simd", "generic", "--workload", "custom", "--widths", "1,2,3", "--samples", "100",
                 "--implementations", "native-1thread", "--rounds", "1", "--max-seconds", "0.05",
                 "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    assert report["host"]["simd"] == "generic" and _core.build_config()["simd_active"] == active
    from pyireg import _env
    # the rows run under libgomp's own default wait, not the one pyireg chooses for its process:
    # in a child process, as the header says
    want = "GOMP_SPINCOUNT=300000" if _env.WAIT_BY_PYIREG else report["host"]["openmp_wait"]
    assert report["host"]["openmp_wait"] == want
    assert {r["implementation"] for r in report["rows"]} == {"pyireg native", "pyireg native, 1 thread"}
    missing = [t for t in ("avx512", "avx2") if t not in _core.build_config()["simd_compiled"]
               or not _core.simd_available(t)] if hasattr(_core, "simd_available") else []
    for target in missing:
        err = _one_line_error(capsys, ["bench", "--simd", target, "--workload", "custom", "--widths", "1"])
        assert f"--simd: '{target}' is not available on this CPU/build" in err


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "ddp_sgd", "cg"])
@pytest.mark.parametrize("flag", ["--momentum", "--momentum-step", "--momentum-max"])
def test_a_momentum_for_an_optimizer_without_one_is_refused(capsys, tmp_path, optimizer, flag):
    """--momentum was silently ignored by the optimizers that take none (config.json still
    recorded it); it is refused now, before anything is written. Not given, nothing changes."""
    out = tmp_path / "never"
    err = _one_line_error(capsys, ["sweep", "--widths", "2", "--epochs", "1", "--optimizer", optimizer, flag, "0.3",
                                   "--out", str(out)])
    assert f"{flag}: --optimizer {optimizer} takes no momentum" in err
    assert not out.exists()


def _entry_commands():
    from pyireg.cli.table import table
    return [(kind, name) for kind, entries in table().items() for name in entries]


@pytest.mark.parametrize("kind, name", _entry_commands())
def test_every_demo_and_reproduction_has_working_help(capsys, kind, name):
    """`pyireg demo NAME --help` raised argparse's 'empty group' ValueError for the 8 demos
    without a --seeds setting (the --seeds/--seed group was always created)."""
    with pytest.raises(SystemExit) as info:
        main([kind, name, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert f"pyireg {kind} {name}" in out and "--out" in out
