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
