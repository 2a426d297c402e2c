"""Build pyireg._cuda with nvcc and fail on any register spill or stack frame.

ptxas (-Xptxas -v,-warn-spills, set by CMakeLists.txt) prints, per kernel and architecture,
"N bytes stack frame, N bytes spill stores, N bytes spill loads". A kernel that spills or keeps
a stack frame reads local memory in its loop: this script makes that a build failure.

    python benchmarks/cuda/check_spills.py            # configure and build into a temporary dir
    python benchmarks/cuda/check_spills.py build.log  # check an existing build's output
    python benchmarks/cuda/check_spills.py --import-check
        # also import the built pyireg._cuda (no GPU needed) and print cudaGetDeviceCount's status:
        # 0 (devices), 35 (no driver) or 100 (no device) pass, anything else fails

Exit status: 0 clean, 1 a spill or stack frame, 2 the build failed or printed no kernel.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile

PROPS = re.compile(r"Function properties for (\S+)\s*\n\s*(\d+) bytes stack frame, (\d+) bytes spill stores, "
                   r"(\d+) bytes spill loads")


def import_check(build_dir: str) -> int:
    import glob
    import importlib.util
    found = glob.glob(os.path.join(build_dir, "_cuda.*.so")) + glob.glob(os.path.join(build_dir, "_cuda.so"))
    if not found:
        print("check_spills: no _cuda module in the build")
        return 2
    spec = importlib.util.spec_from_file_location("pyireg._cuda", found[0])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    code, message, count = mod.device_status()
    print(f"check_spills: pyireg._cuda imports; cudaGetDeviceCount: {code} ({message}), {count} device(s); "
          f"archs {list(mod.archs)}")
    return 0 if code in (0, 35, 100) else 1


def build_log(src: str, with_import: bool = False):
    import pybind11
    with tempfile.TemporaryDirectory(prefix="pyireg-cuda-") as tmp:
        cfg = ["cmake", "-S", src, "-B", tmp, "-DCMAKE_BUILD_TYPE=Release", "-DPYIREG_CUDA=ON",
               f"-Dpybind11_DIR={pybind11.get_cmake_dir()}", f"-DPython_EXECUTABLE={sys.executable}"]
        r = subprocess.run(cfg, capture_output=True, text=True, check=False)
        if r.returncode:
            sys.stderr.write(r.stdout + r.stderr)
            sys.exit(2)
        r = subprocess.run(["cmake", "--build", tmp, "--target", "_cuda", "--", "-j2"], capture_output=True, text=True,
                           check=False)
        out = r.stdout + r.stderr
        if r.returncode:
            sys.stderr.write(out)
            print("check_spills: the nvcc build failed")
            sys.exit(2)
        return out, (import_check(tmp) if with_import else 0)


def check(log: str) -> int:
    kernels = PROPS.findall(log)
    if not kernels:
        print("check_spills: no ptxas kernel report in the output (was -Xptxas -v set?)")
        return 2
    bad = [(k, int(st), int(ss), int(sl)) for k, st, ss, sl in kernels if int(st) or int(ss) or int(sl)]
    warn = [line for line in log.splitlines() if "Registers are spilled" in line]
    for k, st, ss, sl in bad:
        print(f"SPILL {k}: {st} bytes stack frame, {ss} bytes spill stores, {sl} bytes spill loads")
    for line in warn:
        print(line)
    print(f"check_spills: {len(kernels)} kernel reports, {len(bad)} with a stack frame or spills")
    return 1 if bad or warn else 0


def main(argv) -> int:
    args = [a for a in argv[1:] if a != "--import-check"]
    if args:
        with open(args[0], encoding="utf-8", errors="replace") as f:
            return check(f.read())
    src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    log, imported = build_log(src, "--import-check" in argv)
    return max(check(log), imported)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
