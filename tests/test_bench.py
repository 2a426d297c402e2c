"""The benchmark's PyTorch formulations compute what pyireg computes (tiny workloads; no timing
is asserted anywhere)."""
import itertools
import json

import numpy as np
import pytest
import torch

from pyireg import PackedMLP, MomentumSGD, bench
from pyireg import reference as R
from pyireg.testing import assert_tolerance

from helpers import make_data


def _padded_units(widths, groups):
    w = np.asarray(widths)
    return sum(len(g) * int(w[g].max()) for g in groups)


@pytest.mark.parametrize("seed", range(6))
def test_bucket_plan_pads_the_fewest_units(seed):
    rng = np.random.default_rng(seed)
    widths = rng.integers(1, 40, rng.integers(3, 12)).tolist()
    distinct = sorted(set(widths))
    for count in range(1, len(distinct) + 2):
        groups = bench.bucket_plan(widths, count)
        assert sorted(np.concatenate(groups).tolist()) == list(range(len(widths)))
        assert len(groups) == min(count, len(distinct))
        w = np.asarray(widths)
        for a, b in zip(groups, groups[1:]):
            assert w[a].max() < w[b].min()        # consecutive widths; one width in one bucket
        # brute force over every way to cut the distinct widths into that many buckets
        best = min(
            sum(sum(widths.count(x) for x in distinct[i:j]) * distinct[j - 1]
                for i, j in zip((0,) + cuts, cuts + (len(distinct),)))
            for cuts in itertools.combinations(range(1, len(distinct)), min(count, len(distinct)) - 1))
        assert _padded_units(widths, groups) == best


def test_bucket_plan_dense_padding():
    widths = list(range(1, 1025))
    groups = bench.bucket_plan(widths, 64)
    assert len(groups) == 64
    assert bench.padding_fraction(widths, groups) == pytest.approx(64 * 120 / sum(widths))


def _trainers():
    return {
        "loop": lambda m, hp: bench.TorchLoop(m, *hp),
        "buckets, GEMM per bucket": lambda m, hp: bench.TorchBuckets(m, bench.bucket_plan(m.widths, 3),
                                                                     "GEMM per bucket", *hp),
        "buckets, one GEMM": lambda m, hp: bench.TorchBuckets(m, bench.bucket_plan(m.widths, 3), "one GEMM", *hp),
        "packed, index_add": lambda m, hp: bench.TorchPacked(m, "index_add", False, *hp),
        "packed, embedding_bag": lambda m, hp: bench.TorchPacked(m, "embedding_bag", False, *hp),
        "module, autograd": lambda m, hp: bench.ModuleTrainer(m, "autograd", *hp),
        "module, losses": lambda m, hp: bench.ModuleTrainer(m, "losses", *hp),
        "module, fused": lambda m, hp: bench.ModuleTrainer(m, "fused", *hp),
    }


@pytest.mark.parametrize("name, per_network", [(n, p) for n in sorted(_trainers()) for p in (False, True)
                                                if not (n == "loop" and p)])
def test_torch_formulations_follow_the_reference(name, per_network):
    """Three steps, per-network hyper-parameters and weight decay included (not for the loop,
    whose one parameter group takes scalars): the losses of every step meet the tolerance rule
    against the float64 twin, as pyireg's do."""
    widths = [3, 1, 7, 7, 2, 12, 5, 3]
    N = len(widths)
    if per_network:
        hp = (np.linspace(0.05, 0.2, N), np.linspace(0.0, 0.9, N), np.array([0, 1e-3, 1e-2, 0, 0.1, 1e-4, 0, 1e-3]))
    else:
        hp = (0.1, 0.5, 0.0)
    model = PackedMLP(widths, 20, 4, seed=3)
    trainer = _trainers()[name](model, hp)
    X, y = make_data(16, 20, 4, seed=1)
    refs = {}
    for dt in (torch.float32, torch.float64):
        mods = R.modules_from_packed(model.U, model.V, model.offsets, dtype=dt)
        opt = R.make_sgd(mods, *hp)
        refs[dt] = [R.step(mods, opt, X, y) for _ in range(3)]
    native = MomentumSGD(model.copy(), *hp)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    for s in range(3):
        got = trainer.step(Xt, yt).numpy()
        ref32 = np.asarray(refs[torch.float32][s], np.float32)
        assert_tolerance(got, ref32, refs[torch.float64][s], f"{name}, step {s + 1}")
        assert_tolerance(native.step(X, y), ref32, refs[torch.float64][s], f"pyireg, step {s + 1}")
    if hasattr(trainer, "padding_is_zero"):
        assert trainer.padding > 0
        assert trainer.padding_is_zero()


def test_loss_check_catches_a_wrong_step():
    model = PackedMLP([2, 5, 9], bench.D, bench.K, seed=0)
    X, y = bench._data(200)
    ref = bench.reference_losses(model, X, y)
    losses = bench.native_train(model, X, y, 0.0)[3]
    assert bench.loss_check("native", losses, ref) <= 1.0
    with pytest.raises(AssertionError, match="step 2"):
        bench.loss_check("perturbed", [losses[0], losses[1] * (1 + 1e-4), losses[2]], ref)
    with pytest.raises(AssertionError, match="2 steps' losses recorded, the check compares 3"):
        bench.loss_check("short", losses[:2], ref)


@pytest.mark.parametrize("momentum", [0.0, 0.99])
def test_loss_check_sees_the_momentum(momentum):
    """The first two steps (both on batch 0) do not depend on the momentum (the first update's
    buffer is the gradient): an implementation with the wrong momentum passed. The third step
    (batch 1, as the timed run takes it) does, and the check compares it."""
    model = PackedMLP([2, 5, 9], bench.D, bench.K, seed=0)
    X, y = bench._data(200)
    ref = bench.reference_losses(model, X, y)
    assert len(ref[1]) == 3
    wrong = PackedMLP([2, 5, 9], bench.D, bench.K, seed=0)
    opt = MomentumSGD(wrong, lr=bench.LR, momentum=momentum, weight_decay=bench.WEIGHT_DECAY)
    losses = [opt.step(X[b * 100:(b + 1) * 100], y[b * 100:(b + 1) * 100]) for b in bench.check_batches(2)]
    assert bench.loss_check("first two", losses[:2], (ref[0][:2], ref[1][:2])) <= 1.0
    with pytest.raises(AssertionError, match="step 3"):
        bench.loss_check("wrong momentum", losses, ref)


def test_run_tiny_ladder():
    """The whole ladder on a tiny workload: every row passes the loss check; a compile that
    cannot finish within its budget is reported as skipped, not timed."""
    spec = bench.custom_workload([1, 2, 3, 5, 8, 8, 13], 200)
    report = bench.run([("tiny", spec)], max_seconds=0.05, rounds=1, log=lambda *_: None, peak_n=64,
                       bucket_counts=(2, 4), tune_steps=1, compile_budget=0.01)
    rows = {r["implementation"]: r for r in report["rows"]}
    assert set(rows) == set(bench.TRAIN_IMPLS)
    compiled = rows.pop(bench.COMPILED)
    assert compiled["seconds"] is None and compiled["note"].startswith("skipped")
    for r in rows.values():
        assert r["seconds"] > 0 and r["loss_check"] <= 1.0 and r["pct_of_peak"] > 0
    for name, target in bench.MODULE_TARGETS.items():
        assert rows[name]["note"].endswith(f"the time of pyireg native (target <= {target})")
    torch_rows = [r for n, r in rows.items() if not n.startswith("pyireg")]
    assert max(r["speedup_vs_best_torch"] for r in torch_rows) == pytest.approx(1.0)
    cfg = rows[bench.BUCKETS]["config"]
    assert cfg["count"] in (2, 4) and cfg["layout"] in bench.BUCKET_LAYOUTS and len(cfg["trials"]) == 4
    assert "skipped" in bench.format_table(report)
    json.dumps(report, allow_nan=False)
    # the host and what was measured on it in the same run: in the header and in the JSON
    from pyireg import build_config, get_num_threads
    host = report["host"]
    assert host["simd"] == build_config()["simd_active"] and host["native_threads"] == get_num_threads()
    assert host["prefetch_ahead"] is build_config()["prefetch_ahead"]
    assert host["l2_cache_bytes"] == build_config()["l2_cache_bytes"]
    assert host["torch_threads"] == torch.get_num_threads() == report["torch_threads"]
    assert host["cpu"] and host["matmul_peak_gflops"] == report["matmul_peak_gflops"] > 0
    strongest = report["strongest_torch"]["tiny"]
    assert strongest["seconds"] == min(r["seconds"] for n, r in rows.items() if not n.startswith("pyireg"))
    assert rows[strongest["implementation"]]["speedup_vs_best_torch"] == pytest.approx(1.0)
    header = bench.format_table(report).split("\n\n")[0]
    assert f"host: {host['cpu']}" in header and f"SIMD target {host['simd']}" in header
    assert f"{host['native_threads']} native threads" in header
    assert f"{report['matmul_peak_gflops']:.1f} GFLOP/s" in header
    assert f"strongest torch formulation measured in this run, tiny: {strongest['implementation']}" in header


@pytest.mark.slow
def test_scaling_tiny():
    """A point of each sweep, each in a fresh process, with the loss check."""
    report = bench.run_scaling(repeats=(2,), samples=(200,), fixed_repeats=2, steps=1, bucket_counts=(2,),
                               tune_steps=1, mix=[1, 2, 3, 4], log=lambda *_: None)
    rows = report["rows"]
    assert [(r["sweep"], r["units"], r["samples"], r["implementation"]) for r in rows] == [
        ("units", 20, 1000, "pyireg native"), ("units", 20, 1000, bench.BUCKETS),
        ("samples", 20, 200, "pyireg native"), ("samples", 20, 200, bench.BUCKETS)]
    for r in rows:
        assert r["step_seconds"] > 0 and r["peak_mb"] >= 0 and r["loss_check"] <= 1.0
    assert rows[1]["config"]["count"] == 2
    assert "peak MiB" in bench.format_scaling(report)
    from pyireg import build_config
    assert report["host"]["simd"] == build_config()["simd_active"]
    assert f"host: {report['host']['cpu']}" in bench.format_scaling(report)
    json.dumps(report, allow_nan=False)


def test_roofline_model_is_consistent():
    """The model's arithmetic on chosen inputs: the phases' FLOPs are the useful FLOPs of a step;
    each phase takes the longer of its compute and memory times; bandwidth is per core x threads
    up to the socket's; the step never gets slower with more threads; the scaling stop is where
    doubling first gains under 10%."""
    widths = [1, 2, 4, 8, 1000]
    ph = bench.phases(widths)
    assert sum(p["flops"] for p in ph) == pytest.approx(bench.useful_flops(widths, bench.BATCH, "train"))
    S = sum(widths)
    # one pass over memory: the weights read by the forward (still in cache for the update), the
    # momentum buffers read by the update, both written back
    assert sum(p["bytes"] for p in ph) == pytest.approx(16 * S * (bench.D + bench.K))
    kw = dict(peak_per_thread=50.0, bandwidth_per_core=10.0, socket_bandwidth=100.0, segmented_efficiency=0.5)
    prev = None
    for n in (1, 2, 4, 8, 16, 32, 64):
        m = bench.predict(ph, n, **kw)
        assert m["bandwidth_gbs"] == pytest.approx(min(10.0 * n, 100.0))
        for p in m["phases"]:
            e = 1.0 if p["kind"] == "gemm" else 0.5
            assert p["compute_s"] == pytest.approx(p["flops"] / (n * 50e9 * e))
            assert p["memory_s"] == pytest.approx(p["bytes"] / (min(10.0 * n, 100.0) * 1e9))
            assert p["seconds"] == max(p["compute_s"], p["memory_s"])
        assert m["step_s"] == pytest.approx(sum(p["seconds"] for p in m["phases"]))
        assert prev is None or m["step_s"] <= prev
        prev = m["step_s"]
    stop = bench.scaling_stop(ph, **kw)
    step = {n: bench.predict(ph, n, **kw)["step_s"] for n in (stop // 2, stop, 2 * stop)}
    assert step[stop] / step[2 * stop] < 1.1
    assert stop == 1 or step[stop // 2] / step[stop] >= 1.1
    # past the socket's bandwidth (10 threads here) the memory time of the update stops falling
    upd = [bench.predict(ph, n, **kw)["phases"][3]["memory_s"] for n in (16, 64)]
    assert upd[0] == pytest.approx(upd[1])


def test_roofline_tiny_run():
    """The measured inputs and the report on a tiny workload (no timing asserted)."""
    spec = bench.custom_workload([1, 2, 3, 64], 200)
    report = bench.run_roofline([("tiny", spec)], predict_threads=(16, 64), peak_n=64, stream_mib=1,
                                log=lambda *_: None)
    from pyireg import build_config, get_num_threads
    assert report["host"]["simd"] == build_config()["simd_active"] and report["threads"] == get_num_threads()
    assert report["stream"]["one_core_gbs"] > 0 and report["matmul_peak_gflops"] > 0
    (w,) = report["workloads"]
    assert [m["threads"] for m in w["models"]] == [get_num_threads(), 16, 64]
    assert w["measured_step_s"] > 0 and w["units"] == 70
    text = bench.format_roofline(report)
    assert "| 16 threads | 64 threads |" in text and f"host: {report['host']['cpu']}" in text
    assert "scaling stops" in text
    json.dumps(report, allow_nan=False)


def test_next_chunk_prefetch_follows_the_l2_size():
    """The forward's prefetch of the next chunk is on where L2 holds at least 1 MiB per core
    (measured: a gain on the Xeon and Zen 4, a 14% loss on Zen 3 with 512 KiB); build_config and
    the bench header say which, with a plausible size."""
    import platform

    from pyireg import build_config
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("needs an x86-64 host")
    cfg = build_config()
    l2 = cfg["l2_cache_bytes"]
    assert cfg["prefetch_ahead"] is (l2 >= 1 << 20)
    # CPUID's size (KiB granularity); not compared with sysfs, which can disagree on hybrid CPUs
    # and under hypervisors with legacy cache leaves
    assert l2 == 0 or (64 << 10 <= l2 <= 64 << 20 and l2 % 1024 == 0)
    for flag, size in ((True, 1 << 21), (False, 1 << 19)):
        host = {"cpu": "x", "cpu_count": 2, "simd": "avx2", "prefetch_ahead": flag, "l2_cache_bytes": size,
                "native_threads": 2}
        header = bench.format_host({"host": host, "matmul_peak_gflops": 1.0})
        assert f"next-chunk prefetch {'on' if flag else 'off'} (L2 {size // 1024} KiB per core)" in header


def test_the_evaluation_rows_are_checked_against_the_float64_twin(monkeypatch):
    """The evaluation rows were compared only with each other's error rates (two wrong networks
    of 1,024 passed; with only the native rows nothing was checked): pyireg native's mean losses
    of the first networks now meet the tolerance rule against the float64 twin."""
    spec = dict(widths=[1, 2, 3, 5, 8], samples=1000, kind="eval", label="tiny evaluation")
    report = bench.run([("tiny", spec)], max_seconds=0.05, rounds=1, log=lambda *_: None, peak_n=64)
    rows = {r["implementation"]: r for r in report["rows"]}
    assert 0 <= rows["pyireg native"]["loss_check"] <= 1.0 and rows["torch loop over widths"]["loss_check"] is None
    real = PackedMLP.evaluate

    def off_by_a_little(self, *a, **kw):
        err, loss = real(self, *a, **kw)
        loss = loss.copy()
        loss[3] *= 1 + 1e-4
        return err, loss
    monkeypatch.setattr(PackedMLP, "evaluate", off_by_a_little)
    with pytest.raises(AssertionError, match="tiny: pyireg native: the evaluated losses break the tolerance rule"):
        bench.run([("tiny", spec)], max_seconds=0.05, rounds=1, log=lambda *_: None, peak_n=64,
                  implementations=["pyireg native"])


def test_child_processes_run_the_parents_simd_target():
    """bench --scaling --simd X timed its points in children on the CPU's widest target while
    the header said X: the payload carries the target, and the child sets it."""
    from pyireg import _core
    from pyireg.bench.run import _child_payload
    before = _core.build_config()["simd_active"]
    try:
        _core.set_simd("generic")
        assert _child_payload(what="x")["simd"] == "generic"
    finally:
        _core.set_simd(before)
