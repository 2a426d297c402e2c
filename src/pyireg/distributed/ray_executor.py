"""Packs as Ray tasks: an embedded local Ray (started and stopped here), or a running cluster.

Ray is imported when an executor starts, never by ``import pyireg``. Each pack is one task
reserving ``threads_per_worker`` CPUs and running that many native threads; at most ``workers``
tasks are in flight, the largest packs first. A task whose worker dies (killed, out of memory,
a lost node) is run again by Ray, up to ``max_retries`` times: its pack file is published only
by a complete attempt, so nothing is lost or counted twice. A task that raises is not retried
(the same input would raise again): its pack is reported, the other packs finish.
"""
from __future__ import annotations

import collections
import contextlib
import numbers
import os
import signal
import threading
from pathlib import Path

from .packs import _check_pack_units


def machine_cpus() -> int:
    """CPUs this process may use: its affinity mask, bounded by a cgroup CPU quota if any."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def _positive(v, name):
    if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1):
        raise ValueError(f"{name}: expected a positive integer or None, got {v!r}")
    return None if v is None else int(v)


def _ray_task(job, ds, pack, hook=None):
    """One pack, in a Ray worker. ``hook`` (tests only) is called as hook(pack id, "start", "")
    and then, through the job, before each file operation (the store's fault hook)."""
    if hook is None:
        return job(ds, pack)
    hook(pack.id, "start", "")
    return job(ds, pack, fault_hook=lambda op, path: hook(pack.id, op, path))


# --------------------------------------------------------------------------- the embedded Ray's reaper
# Ray's own processes die with the driver only in part: after a SIGKILL of the driver, the
# agents its raylet started (DashboardAgent, RuntimeEnvAgent) were seen to keep running. A small
# watcher in a session of its own holds the read end of a pipe whose only write end is the
# driver's: when the driver ends, however it ends, the read sees end-of-file, and the watcher
# stops the embedded Ray's process tree (the driver's children started by this Ray session,
# recognised by the session directory in their command line, and their descendants, followed
# while the driver lived: the agents rename themselves, so they are known by their parent).
_REAPER = r"""
import os, select, signal, sys, time
fd, driver, session = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]

def table():
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    cmd = f.read()
            except OSError:
                continue
            out[int(name)] = (int(fields[1]), fields[19], cmd)      # ppid, start time, command line
    return out

def tree(procs, roots):
    seen, todo = set(), list(roots)
    while todo:
        p = todo.pop()
        if p not in seen and p in procs:
            seen.add(p)
            todo.extend(q for q, v in procs.items() if v[0] == p)
    return seen

known = {}
key = session.encode()
while True:
    procs = table()
    roots = [p for p, v in procs.items() if (v[0] == driver and key in v[2]) or p in known]
    for p in tree(procs, roots):
        known.setdefault(p, procs[p][1])
    readable, _, _ = select.select([fd], [], [], 1.0)
    if readable and not os.read(fd, 64):
        break
for attempt in (signal.SIGTERM, signal.SIGKILL):
    procs = table()
    alive = [p for p in tree(procs, [p for p in known if p in procs and procs[p][1] == known[p]]) if p != os.getpid()]
    alive += [p for p, v in procs.items() if key in v[2] and p not in alive and p != os.getpid()]
    if not alive:
        break
    for p in alive:
        try:
            os.kill(p, attempt)
        except OSError:
            pass
    if attempt == signal.SIGTERM:
        end = time.time() + 5
        while time.time() < end and any(os.path.exists(f"/proc/{p}") for p in alive):
            time.sleep(0.2)
"""


def _start_reaper(ray):
    """The watcher of an embedded Ray (Linux; elsewhere None): returns (process, write end)."""
    import subprocess
    import sys
    if not sys.platform.startswith("linux"):
        return None
    try:
        session = ray._private.worker._global_node.get_session_dir_path()
    except AttributeError:         # another Ray: nothing to recognise its processes by
        return None
    r, w = os.pipe()
    try:
        proc = subprocess.Popen([sys.executable, "-c", _REAPER, str(r), str(os.getpid()), session], pass_fds=(r,),
                                start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    except OSError:
        os.close(w)
        return None
    finally:
        os.close(r)
    return proc, w


def _stop_reaper(reaper) -> None:
    """After ray.shutdown(): close the pipe (the watcher stops whatever is left, then exits)."""
    if reaper is None:
        return
    proc, w = reaper
    try:
        os.close(w)
    except OSError:
        pass
    try:
        proc.wait(timeout=15)
    except Exception:          # noqa: BLE001  (still cleaning up: it runs on by itself)
        pass



def check_reachable(address: str, timeout: float = 10.0) -> None:
    """A cluster address of the form host:port (or ray://host:port) answers a TCP connection
    within ``timeout`` seconds; ray.init itself retries an unreachable one for minutes. Other
    forms ("auto", a path) are left to Ray."""
    import socket
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise ConnectionError(f"address: no Ray cluster answers at {address} ({e.strerror or e}); start one "
                              "there with `ray start --head`, or leave --address out for a local one") from None

class RayExecutor:
    """Runs a sweep's packs as Ray tasks.

    address : None: the cluster named by $RAY_ADDRESS if set, else an embedded local Ray sized
        to this machine, started by the sweep and stopped at its end. A string: a running
        cluster ("auto", or its head's "host:6379"); this process joins it as a driver and leaves
        at the end. The driver must see the sweep directory too (run it on a node of the
        cluster). A process already connected (``ray.init`` called before) is used as it is.
    workers : packs trained at once (default: the cluster's CPUs / threads_per_worker).
    threads_per_worker : native threads per pack (default: 1, or the CPUs / ``workers`` when
        ``workers`` is given, so that ``workers=1`` trains one pack on every core).
    pack_units : hidden units per pack (default: pyireg.distributed.packs.default_pack_units,
        about 4 packs per worker). A resumed sweep keeps the packs it was started with.
    max_retries : times a task is run again after its worker died.
    runtime_env : passed to ``ray.init`` (e.g. {"pip": ["pyireg"]} on a cluster without it).

    Usable as a context manager, so that several sweeps share one embedded Ray::

        with RayExecutor(workers=4) as ex:
            a = pyireg.sweep(ds, widths, out="a", executor=ex)
            b = pyireg.sweep(ds2, widths, out="b", executor=ex)
    """

    def __init__(self, address: str | None = None, workers: int | None = None,
                 threads_per_worker: int | None = None, pack_units: int | None = None, max_retries: int = 3,
                 runtime_env: dict | None = None, _task_hook=None):
        if address is not None and (not isinstance(address, str) or not address.strip()):
            raise ValueError(f"address: expected a Ray address such as 'auto' or 'host:6379', got {address!r}")
        self.address = address
        self.workers = _positive(workers, "workers")
        self.threads_per_worker = _positive(threads_per_worker, "threads_per_worker")
        self.pack_units = None if pack_units is None else _check_pack_units(pack_units)
        if isinstance(max_retries, bool) or not isinstance(max_retries, numbers.Integral) or max_retries < 0:
            raise ValueError(f"max_retries: expected a non-negative integer, got {max_retries!r}")
        self.max_retries = int(max_retries)
        if runtime_env is not None and not isinstance(runtime_env, dict):
            raise TypeError(f"runtime_env: expected a dict or None, got {type(runtime_env).__name__}")
        self.runtime_env = runtime_env
        self._task_hook = _task_hook
        self._users, self._owned, self._info = 0, False, None
        self._reaper = None

    def __repr__(self):
        return (f"RayExecutor(address={self.address!r}, workers={self.workers}, threads_per_worker="
                f"{self.threads_per_worker}, pack_units={self.pack_units})")

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> dict:
        """Start or join Ray (once for nested users); returns how the packs will run."""
        if self._users:
            self._users += 1
            return self._info
        try:
            import ray
        except ImportError:
            raise ImportError('executor: running packs on Ray needs the Python package \'ray\': '
                              'pip install "pyireg[ray]"', name="ray") from None
        address = self.address or os.environ.get("RAY_ADDRESS") or None
        with self._keep_sigterm():
            where, embedded = self._init(ray, address)
        try:
            self._info = self._size(ray, where, embedded)
        except BaseException:
            self._users = 1
            self.stop()
            raise
        self._users = 1
        return self._info

    @staticmethod
    @contextlib.contextmanager
    def _keep_sigterm():
        """ray.init makes SIGTERM exit the process at once; the program running the sweep keeps
        its own handler (the command line stops cleanly and says how to resume)."""
        main = threading.current_thread() is threading.main_thread()
        old = signal.getsignal(signal.SIGTERM) if main else None
        try:
            yield
        finally:
            if main and old is not None:
                signal.signal(signal.SIGTERM, old)

    def _init(self, ray, address):
        embedded = False
        if ray.is_initialized():
            if self.address is not None:
                raise ValueError(f"address: this process is already connected to a Ray cluster; leave address "
                                 f"None to use it, or call ray.shutdown() first (got {self.address!r})")
            where, self._owned = "on the Ray cluster this process is connected to", False
        elif address is not None:
            check_reachable(address)
            ray.init(address=address, runtime_env=self.runtime_env, logging_level="warning")
            where, self._owned = f"on the Ray cluster at {address}", True
        else:
            cpus = machine_cpus()
            threads = self.threads_per_worker or (max(1, cpus // self.workers) if self.workers else 1)
            workers = self.workers or max(1, cpus // threads)
            # Ray adds 15 to its workers' niceness; on a machine shared with other work that would run
            # the packs far below the priority the sweep was started with (the raylet inherits it)
            ray.init(address="local", num_cpus=max(cpus, workers * threads), include_dashboard=False,
                     runtime_env=self.runtime_env, logging_level="warning", _system_config={"worker_niceness": 0})
            where, self._owned, embedded = "on an embedded local Ray", True, True
            self._reaper = _start_reaper(ray)
        return where, embedded

    def _size(self, ray, where, embedded) -> dict:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        node_cpus = max((int(n.get("Resources", {}).get("CPU", 0)) for n in nodes), default=0)
        cpus = int(ray.cluster_resources().get("CPU", 0))
        if cpus < 1:
            raise ValueError(f"address: no CPUs to run packs on, {where}")
        threads = self.threads_per_worker or (max(1, min(node_cpus, cpus // self.workers)) if self.workers else 1)
        if threads > node_cpus:
            raise ValueError(f"threads_per_worker: expected at most {node_cpus} (the most CPUs of a node of the "
                             f"cluster), got {threads}")
        workers = self.workers or max(1, cpus // threads)
        return {"workers": workers, "threads": threads, "per_machine": workers if embedded else None,
                "where": f"{where} ({cpus} CPUs on {len(nodes)} node{'s' if len(nodes) != 1 else ''}): "
                         f"{workers} worker{'s' if workers != 1 else ''} x "
                         f"{threads} thread{'s' if threads != 1 else ''}"}

    def stop(self) -> None:
        """Leave Ray (stopping the embedded one) when the last user is done."""
        if self._users == 0:
            return
        self._users -= 1
        if self._users == 0 and self._owned:
            import ray
            try:
                ray.shutdown()
            finally:
                self._owned = False
                _stop_reaper(getattr(self, "_reaper", None))
                self._reaper = None

    # ------------------------------------------------------------------ the packs
    def run(self, job, ds, packs):
        """Yield (pack, result or exception) as packs finish, ``packs`` submitted in order."""
        import ray
        from ray.exceptions import RayError, RayTaskError
        threads, workers = self._info["threads"], self._info["workers"]
        remote = ray.remote(_ray_task)
        data = ray.put(ds)                         # once: every task reads it from the object store
        queue, inflight = collections.deque(packs), {}
        try:
            while queue or inflight:
                while queue and len(inflight) < workers:
                    p = queue.popleft()
                    ref = remote.options(num_cpus=threads, max_retries=self.max_retries, retry_exceptions=False,
                                         name=f"pyireg pack {p.id}").remote(job, data, p, self._task_hook)
                    inflight[ref] = p
                ready, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)   # a timeout keeps Ctrl-C prompt
                for ref in ready:
                    p = inflight.pop(ref)
                    try:
                        outcome = ray.get(ref)
                    except RayTaskError as e:          # the pack raised: its own exception
                        cause = getattr(e, "cause", None)
                        outcome = cause if isinstance(cause, BaseException) else RuntimeError(str(e).strip())
                    except RayError as e:              # its worker or node died more than max_retries times
                        first = (str(e).strip().splitlines() or [""])[0]
                        outcome = RuntimeError(f"its task failed {self.max_retries + 1} times ({type(e).__name__}: "
                                               f"{first})")
                    yield p, outcome
        finally:
            for ref in inflight:                   # interrupted: stop what runs for nothing
                try:
                    ray.cancel(ref, force=True)
                except Exception:                  # already finished or gone
                    pass
