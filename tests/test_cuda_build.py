"""The CUDA build's checks that need no GPU and no nvcc run: the spill checker's verdicts on
ptxas reports (benchmarks/cuda/check_spills.py), and what pyireg.build_config says."""
import importlib.util
import pathlib

import pyireg

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _checker():
    spec = importlib.util.spec_from_file_location("check_spills", ROOT / "benchmarks" / "cuda" / "check_spills.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


REPORT = """ptxas info    : Compiling entry function '_Z6kernelPf' for 'sm_90'
ptxas info    : Function properties for _Z6kernelPf
    {stack} bytes stack frame, {st} bytes spill stores, {ld} bytes spill loads
ptxas info    : Used 32 registers, used 0 barriers
"""


def test_check_spills_passes_clean_reports_and_fails_on_spills_or_stack(capsys):
    check = _checker().check
    assert check(REPORT.format(stack=0, st=0, ld=0) * 3) == 0
    assert check(REPORT.format(stack=16, st=0, ld=0)) == 1
    assert check(REPORT.format(stack=0, st=8, ld=8)) == 1
    assert check("nvcc said nothing useful") == 2
    assert "SPILL _Z6kernelPf" in capsys.readouterr().out


def test_build_config_has_the_cuda_keys():
    cfg = pyireg.build_config()
    assert {"cuda", "cuda_archs", "cuda_emulated"} <= set(cfg)
    assert cfg["cuda_emulated"] is True
    assert cfg["cuda"] is bool(cfg["cuda_archs"])
