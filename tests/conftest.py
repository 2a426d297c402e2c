import pytest

from pyireg import _core


@pytest.fixture(autouse=True)
def _restore_core_settings():
    """Tests may switch the SIMD target or thread count; put them back afterwards."""
    threads = _core.get_num_threads()
    simd = _core.build_config()["simd_active"]
    yield
    _core.set_num_threads(threads)
    _core.set_simd(simd)


@pytest.fixture(scope="session")
def ray_address():
    """A local Ray of 2 CPUs, started once per test session (about 10 s); the address of its head.
    Sweeps with executor "ray" use this process's connection; subprocesses join it by address."""
    ray = pytest.importorskip("ray", reason='Ray is not installed (pip install "pyireg[ray]")')
    # address "local": always a new instance, never a cluster someone started on this machine
    ctx = ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="warning")
    yield ctx.address_info["address"]
    ray.shutdown()
