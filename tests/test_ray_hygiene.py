"""An embedded Ray started by a sweep's executor does not outlive its driver: after a SIGKILL of
the driver, every process of that Ray (its GCS, raylet, agents and workers) is gone."""
import os
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("ray")
if not sys.platform.startswith("linux"):
    pytest.skip("the watcher of an embedded Ray is Linux-only", allow_module_level=True)

DRIVER = """
import os, time
from pyireg.distributed.ray_executor import RayExecutor
ex = RayExecutor(workers=1, threads_per_worker=1)
ex.start()
import ray
@ray.remote(num_cpus=1)
def pid():
    return os.getpid()
print(ray.get(pid.remote()), flush=True)       # a worker is running too
print("READY", flush=True)
time.sleep(600)
"""


def _procs():
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            out[int(name)] = (int(fields[1]), fields[19])
    return out


def _cmdline(p) -> bytes:
    try:
        with open(f"/proc/{p}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def _tree(root):
    procs, seen, todo = _procs(), set(), [root]
    while todo:
        p = todo.pop()
        if p not in seen and p in procs:
            seen.add(p)
            todo.extend(q for q, v in procs.items() if v[0] == p)
    return {p: procs[p][1] for p in seen - {root}}


@pytest.mark.slow
def test_embedded_ray_does_not_outlive_a_killed_driver():
    env = dict(os.environ, RAY_DISABLE_USAGE_STATS="1")
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True, env=env, start_new_session=True)
    try:
        deadline = time.time() + 240
        for line in driver.stdout:
            if line.strip() == "READY" or time.time() > deadline:
                break
        assert driver.poll() is None, "the driver did not start Ray"
        ray_procs = _tree(driver.pid)
        reaper = [p for p in ray_procs if b"select.select" in _cmdline(p)]
        ray_procs = {p: t for p, t in ray_procs.items() if p not in reaper}
        assert len(ray_procs) >= 3, ray_procs          # at least the GCS, the raylet and a worker
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(30)
        end = time.time() + 20
        while time.time() < end:
            now = _procs()
            left = [p for p, t in ray_procs.items() if p in now and now[p][1] == t]
            if not left:
                break
            time.sleep(1)
        names = [_cmdline(p)[:60] for p in left]
        for p in left:                                  # leave nothing behind, whatever the outcome
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        assert not left, f"{len(left)} Ray processes outlived the driver: {names}"
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait(30)
        driver.stdout.close()
