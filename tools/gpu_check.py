#!/usr/bin/env python
"""
One command for a machine with a CUDA GPU: the CUDA tests, then the CUDA attention table.

1. ``pytest -m cuda tests`` (the tests that need a GPU; everything else is skipped), summary
   in ``OUTPUT/cuda_tests.txt`` and ``OUTPUT/cuda_tests.xml`` (JUnit);
2. ``tools/benchmark_attention.py --device cuda``: the GEMM floor, ours (NCHW, channels-last,
   ``torch.compile``), the authors' and mmcv's formulations, float32 and under autocast
   float16 / bfloat16, batch 1 and 2, train (forward+backward) and inference, at the paper's
   setting (512x97x97, q/k 64); table in ``OUTPUT/attention_cuda.md``, every number in
   ``OUTPUT/attention_cuda.json``, warnings and errors in ``OUTPUT/attention_cuda.log``;
3. ``OUTPUT/environment.txt``: Python, torch, CUDA, GPU, Detectron2.

Exits non-zero if a test fails or the benchmark fails (e.g. a variant disagrees with ours).
``--cpu`` is a dry run of the same steps on the CPU at a tiny size (no ``torch.compile``, whose
CPU compile takes minutes), for the test suite.

Usage (``make gpu-check`` makes a virtual environment on top of the machine's own torch,
runs ``--install`` in it, then the check):
  python tools/gpu_check.py --install      # the project's other pins, the project, Detectron2
  python tools/gpu_check.py [--output-dir output/gpu-check] [--cpu] [--timeout 420]
"""
import argparse
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CUDA_BENCHMARK = [
    "--device", "cuda", "--dtypes", "float32,float16,bfloat16", "--batches", "1,2",
    "--repeats", "10", "--variants", "floor,cc_core,cc_core_cl,cc_compile,cc_straight,cc_mmcv",
]  # fmt: skip
CPU_DRY_RUN = [
    "--device", "cpu", "--threads", "1", "--dtypes", "float32,bfloat16", "--batches", "1,2",
    "--size", "8", "--channels", "16", "--repeats", "1", "--skip-memory",
    "--variants", "floor,cc_core,cc_core_cl,cc_straight,cc_mmcv",
]  # fmt: skip


def _run(command, stdout_path, timeout, stderr_path=None):
    """Run `command` from the repository root, its output into `stdout_path` (stderr too,
    unless `stderr_path`); return the exit code."""
    start = time.perf_counter()
    with open(stdout_path, "w") as out, open(stderr_path or os.devnull, "w") as err:
        try:
            code = subprocess.run(
                command, cwd=ROOT, stdout=out, timeout=timeout,
                stderr=err if stderr_path else subprocess.STDOUT,
            ).returncode  # fmt: skip
        except subprocess.TimeoutExpired:
            (err if stderr_path else out).write(f"\nTIMEOUT after {timeout} s\n")
            code = 124
    print(f"  {' '.join(command[1:3])} ...: exit {code}, {time.perf_counter() - start:.0f} s")
    return code


KEEP = ("torch", "torchvision")  # the machine's own builds, matched to its CUDA driver


def dependencies_to_install(pyproject=os.path.join(ROOT, "pyproject.toml")):
    """The project's pinned runtime and test dependencies, without torch and torchvision."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    with open(pyproject, "rb") as f:
        project = tomllib.load(f)["project"]
    pins = project["dependencies"] + project.get("optional-dependencies", {}).get("test", [])
    name = lambda pin: pin.split("=")[0].split("<")[0].split(">")[0].split("[")[0].strip()  # noqa: E731
    return [pin for pin in pins if name(pin).lower() not in KEEP]


def install() -> None:
    """Into the running environment (a venv on top of the machine's torch): the project's other
    dependencies, the project itself (editable, no dependencies) and Detectron2 the way
    ``make setup`` installs it (tools/install_detectron2.py)."""
    import importlib.util

    missing = [m for m in KEEP if importlib.util.find_spec(m) is None]
    if missing:
        sys.exit(f"{missing} not importable: gpu-check uses the machine's own torch and torchvision")
    pip = [sys.executable, "-m", "pip", "install", "--quiet"]
    subprocess.check_call(pip + ["setuptools>=68", "wheel"] + dependencies_to_install())
    subprocess.check_call(pip + ["--no-deps", "--no-build-isolation", "-e", ROOT])
    subprocess.check_call([sys.executable, os.path.join(ROOT, "tools", "install_detectron2.py")])


def environment_report(cpu: bool) -> str:
    import torch

    lines = [f"python {platform.python_version()}", f"torch {torch.__version__}"]
    lines.append(f"CUDA (torch build) {torch.version.cuda}")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            lines.append(f"GPU {i}: {torch.cuda.get_device_name(i)}")
    else:
        lines.append("no CUDA GPU" + (" (CPU dry run)" if cpu else ""))
    try:
        from ccnet import compat

        compat.apply()  # makes Detectron2 importable
        import detectron2

        lines.append(f"detectron2 {detectron2.__version__} at {os.path.dirname(detectron2.__file__)}")
    except ImportError as e:
        lines.append(f"detectron2 not importable: {e}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default=os.path.join(ROOT, "output", "gpu-check"))
    parser.add_argument("--cpu", action="store_true", help="dry run on the CPU at a tiny size")
    parser.add_argument("--timeout", type=int, default=420, help="seconds per step")
    parser.add_argument("--install", action="store_true", help="only set up the environment")
    args = parser.parse_args(argv)
    if args.install:
        install()
        return 0

    import torch

    if not args.cpu and not torch.cuda.is_available():
        parser.error("no CUDA GPU visible to torch (use --cpu for a dry run)")
    out = os.path.abspath(args.output_dir)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "environment.txt"), "w") as f:
        f.write(environment_report(args.cpu))

    print(f"CUDA tests -> {out}/cuda_tests.txt")
    test_code = _run(
        [
            sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-rA", "-p", "no:cacheprovider",
            f"--junitxml={os.path.join(out, 'cuda_tests.xml')}", os.path.join(ROOT, "tests"),
        ],  # fmt: skip
        os.path.join(out, "cuda_tests.txt"),
        args.timeout,
    )
    # pytest exit 5: nothing collected; with -m cuda everything was deselected or skipped.
    tests_ok = test_code in (0, 5)

    print(f"CUDA attention table -> {out}/attention_cuda.md")
    bench = [sys.executable, os.path.join(ROOT, "tools", "benchmark_attention.py")]
    bench += CPU_DRY_RUN if args.cpu else CUDA_BENCHMARK
    bench += ["--json", os.path.join(out, "attention_cuda.json")]
    bench_code = _run(
        bench,
        os.path.join(out, "attention_cuda.md"),
        args.timeout,
        stderr_path=os.path.join(out, "attention_cuda.log"),
    )
    status = "passed" if tests_ok and bench_code == 0 else "FAILED"
    print(f"gpu-check {status}; files in {out}")
    return 0 if tests_ok and bench_code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
