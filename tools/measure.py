"""
How the benchmark tools measure: time, peak memory, FLOPs, the machine's speed and its load.
Every benchmark in tools/ measures through these functions, so that a number means the same in
every table.

Time, :func:`interleaved_medians`
    One warm-up round (every run called once, in order), then ``repeats`` timed rounds, each
    calling every run once in the same order, so that changes of the machine's load hit all runs
    alike; the median of each run's timed calls, in seconds. Every call of round r (0: the
    warm-up) starts from ``torch.manual_seed(r)``, so that variants draw the same random numbers
    (e.g. Detectron2's proposal sampling); on CUDA the device is synchronised before and after
    each call. With ``slow_s``, a run whose warm-up took at least that long is timed in at most
    ``SLOW_ROUNDS`` rounds.

Peak memory, :func:`peak_memory_mb`
    ``fn = prepare(*args)`` builds what is measured and warms it up (libraries loaded, lazily
    created state such as gradients, optimizer state or cuBLAS workspaces allocated: whatever
    the tool does not want counted); then the peak during one call ``fn()`` above the memory in
    use just before it, in MB (2**20 bytes):

    * CPU, in a fresh Python process (one thread), so that nothing measured earlier (peaks,
      cached blocks) carries over: the resident set's high-water mark (``VmHWM`` of
      /proc/self/status, reset through /proc/self/clear_refs just before the call) minus the
      resident set (``VmRSS``) before it. glibc is told to serve every allocation of 64 KiB or
      more with its own mmap (``MALLOC_MMAP_THRESHOLD_=65536``), so that freed tensors leave
      the resident set at once instead of hiding the next peak in the allocator's cache. Good
      to about 0.5 MB (the kernel updates its resident-set counters in batches of pages).
      Linux only.
    * CUDA, in this process (the allocator's counters are exact and can be reset):
      ``torch.cuda.max_memory_allocated`` during the call minus ``memory_allocated`` before it
      (the caching allocator's live tensors; its cache is not counted).

    ``prepare`` is a module-level function of a file (a tool in tools/ or one of its modules)
    and ``args`` plain picklable data (numbers, strings, lists, an argparse Namespace, a
    config): the fresh process loads that file and rebuilds them.

FLOPs: one multiply-add is one FLOP (the paper counts two)
    * :func:`gflops`: a module's forward, counted by fvcore through
      :class:`ccnet.layers.FlopCountAnalysis` (which counts the criss-cross op by its own
      handle), per module name (``""`` the whole model; a module called several times sums its
      calls). What every table's "GFLOPs" of a model, block or attention core is.
    * :func:`gemm_gflops`: the matrix products that code runs, forward and backward, counted by
      torch's ``FlopCounterMode``; for what is not one module's forward: the attention
      benchmark's GEMM floor (``attention_peers.GemmFloor``), whose backward products fvcore
      does not see.

The machine
    * :func:`matmul_rate`: the one-thread float32 ``torch.mm`` rate of 2048x2048 matrices in
      GFLOP/s, here in the usual convention for a machine's rate (2 FLOPs per multiply-add),
      best and median of ``repeats`` products after a warm-up; CPU times measured on two
      machines scale roughly by the ratio of their rates (``tools/matmul_rate.py`` prints it).
    * :func:`load_average`: the 1, 5 and 15-minute load averages (/proc/loadavg). On shared
      cores memory-bound work slows down more than matrix products, so ratios between variants
      drift with the load (tools/benchmark_attention.py and tools/benchmark_semantic_model.py
      print it beside their tables).

The command line, the same in every benchmark tool: ``--json FILE`` writes every number to FILE
(:func:`write_json`), ``--device`` (cpu, cuda, cuda:N), ``--repeats N`` (timed rounds after the
warm-up round) and ``--threads`` (CPU threads of the timed runs), each added by one function
below where the tool has the setting.
"""
import argparse
import importlib.util
import inspect
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, Hashable, Optional

import torch

__all__ = [
    "SLOW_ROUNDS",
    "interleaved_medians",
    "peak_memory_mb",
    "gflops",
    "gemm_gflops",
    "matmul_rate",
    "load_average",
    "add_json_argument",
    "add_device_argument",
    "add_repeats_argument",
    "add_threads_argument",
    "write_json",
]

SLOW_ROUNDS = 3
MMAP_THRESHOLD_BYTES = 65536


def _synchronize(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize(device)


def _timed_call(run: Callable[[], object], device: str, seed: int) -> float:
    torch.manual_seed(seed)
    _synchronize(device)
    start = time.perf_counter()
    run()
    _synchronize(device)
    return time.perf_counter() - start


def interleaved_medians(
    runs: Dict[Hashable, Callable[[], object]],
    repeats: int,
    device: str = "cpu",
    slow_s: Optional[float] = None,
    progress: bool = False,
) -> Dict[Hashable, float]:
    """Median seconds of each ``runs[name]()``: one warm-up round, then ``repeats`` timed
    rounds, the runs interleaved (see the module's docstring).

    Args:
        runs: name -> a function of no arguments, called in this order in every round.
        repeats: timed rounds (>= 1).
        device: where the runs compute (CUDA is synchronised around each call).
        slow_s: runs whose warm-up took at least this many seconds get at most
            ``SLOW_ROUNDS`` timed rounds (None: every run gets ``repeats``).
        progress: print "round i/repeats done" to stderr after each round.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    rounds = {}
    for name, run in runs.items():
        warm_up = _timed_call(run, device, seed=0)
        slow = slow_s is not None and warm_up >= slow_s
        rounds[name] = min(repeats, SLOW_ROUNDS) if slow else repeats
    if progress:
        print(f"  round 0/{repeats} done", file=sys.stderr, flush=True)
    seconds = {name: [] for name in runs}
    for round_index in range(1, repeats + 1):
        for name, run in runs.items():
            if round_index <= rounds[name]:
                seconds[name].append(_timed_call(run, device, seed=round_index))
        if progress:
            print(f"  round {round_index}/{repeats} done", file=sys.stderr, flush=True)
    return {name: statistics.median(values) for name, values in seconds.items()}


def peak_memory_mb(prepare: Callable[..., Callable[[], object]], *args, device: str = "cpu") -> float:
    """Peak memory (MB) of one call of ``prepare(*args)()``, above the memory in use just
    before the call: on CPU in a fresh process, on CUDA in this one (see the module's docstring).

    Raises:
        ValueError: ``prepare`` is not a module-level function of a file.
        RuntimeError: the measuring process failed (the message ends with its output).
    """
    name = getattr(prepare, "__qualname__", "")
    if not inspect.isfunction(prepare) or "<" in name:
        raise ValueError(f"peak_memory_mb needs a module-level function to prepare the measured call, got {prepare!r}")
    if str(device).startswith("cuda"):
        return _cuda_peak_of_one_call(prepare(*args), torch.device(device))
    payload = pickle.dumps((inspect.getfile(prepare), name, pickle.dumps(args)))
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(MMAP_THRESHOLD_BYTES))  # glibc, read at start-up
    with tempfile.TemporaryDirectory() as folder:
        result_file = os.path.join(folder, "peak_mb")
        command = [sys.executable, os.path.abspath(__file__), "--peak-memory-child", result_file]
        child = subprocess.run(command, input=payload, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if child.returncode != 0:
            output = child.stdout.decode(errors="replace")[-4000:]
            call = f"{name}({', '.join(type(a).__name__ for a in args)})"
            raise RuntimeError(f"peak memory of {call} on {device} failed (exit code {child.returncode}):\n{output}")
        with open(result_file) as f:
            return float(f.read())


def _cuda_peak_of_one_call(fn: Callable[[], object], device: torch.device) -> float:
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


def _status_mb(field: str) -> float:
    """A field of /proc/self/status in MB: VmRSS (resident now) or VmHWM (peak resident)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"/proc/self/status has no {field}")


def _cpu_peak_of_one_call(fn: Callable[[], object]) -> float:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current resident set (Linux >= 4.0)
    before = _status_mb("VmRSS")
    fn()
    return _status_mb("VmHWM") - before


def _measure_in_this_process(result_file: str) -> None:
    """The fresh process of :func:`peak_memory_mb` on CPU: the payload on stdin, the MB into a file."""
    path, name, packed_args = pickle.load(sys.stdin.buffer)
    spec = importlib.util.spec_from_file_location("_measured_module", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # first: it imports ccnet before anything unpickles a config
    prepare = module
    for part in name.split("."):
        prepare = getattr(prepare, part)
    torch.set_num_threads(1)  # the peak does not depend on it; leaves the other cores alone
    peak = _cpu_peak_of_one_call(prepare(*pickle.loads(packed_args)))
    with open(result_file, "w") as f:
        f.write(repr(peak))


@torch.no_grad()
def gflops(model: torch.nn.Module, inputs: tuple) -> Dict[str, float]:
    """fvcore GFLOPs (1 multiply-add = 1 FLOP) of one forward ``model(*inputs)``, per module
    name (``""``: the whole model); the criss-cross op is counted by
    :class:`ccnet.layers.FlopCountAnalysis`."""
    from ccnet.layers import FlopCountAnalysis

    analysis = FlopCountAnalysis(model, inputs)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return {name: flops / 1e9 for name, flops in analysis.by_module().items()}


def gemm_gflops(fn: Callable[[], object]) -> float:
    """GFLOPs (1 multiply-add = 1 FLOP) of the matrix products ``fn()`` runs, forward and
    backward alike, counted by torch's ``FlopCounterMode``."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 2 / 1e9  # it counts 2 per multiply-add


def matmul_rate(size: int = 2048, repeats: int = 5) -> dict:
    """Time ``repeats`` one-thread (size x size) @ (size x size) float32 products after a warm-up.

    Returns:
        dict with ``gflops_best``, ``gflops_median`` (2 * size^3 FLOPs per product / seconds /
        1e9), ``seconds`` (each product's time), ``size`` and ``threads`` (1).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        generator = torch.Generator().manual_seed(0)
        a = torch.rand(size, size, generator=generator)
        b = torch.rand(size, size, generator=generator)
        out = torch.empty(size, size)
        torch.mm(a, b, out=out)  # warm-up: page in the buffers, pick the kernel
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b, out=out)
            seconds.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    flops = 2.0 * size**3
    return {
        "gflops_best": flops / min(seconds) / 1e9,
        "gflops_median": flops / statistics.median(seconds) / 1e9,
        "seconds": seconds,
        "size": size,
        "threads": 1,
    }


def load_average() -> str:
    """The 1, 5 and 15-minute load averages, e.g. ``"1.02 0.87 0.55"`` (``"unknown"`` off Linux)."""
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def _device(text: str) -> str:
    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"--device takes cpu, cuda or cuda:N, got {text!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"--device {text} given but CUDA is not available")
    if device.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"--device takes cpu, cuda or cuda:N, got {text!r}")
    return text


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _thread_counts(text: str) -> list:
    counts = [_positive_int(part) for part in text.split(",") if part.strip()]
    if not counts:
        raise argparse.ArgumentTypeError(f"--threads takes comma-separated counts, e.g. 1,2; got {text!r}")
    return counts


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", metavar="FILE", help="also write every number to FILE (JSON)")


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", type=_device, default="cpu", help="cpu, cuda or cuda:N (default cpu)")


def add_repeats_argument(parser: argparse.ArgumentParser, default: int) -> None:
    parser.add_argument(
        "--repeats", type=_positive_int, default=default,
        help=f"timed rounds after one warm-up round; the median is reported (default {default})",
    )  # fmt: skip


def add_threads_argument(parser: argparse.ArgumentParser, default=None, several: bool = False) -> None:
    """``--threads``: the CPU threads of the timed runs; with ``several``, comma-separated counts
    each timed in turn (a list); without a default, torch's own (``OMP_NUM_THREADS``)."""
    if several:
        help = "CPU threads of the timed runs, comma-separated counts each timed in turn, e.g. 1,2"
    else:
        help = "CPU threads of the timed runs" + ("" if default else " (default: torch's, i.e. OMP_NUM_THREADS)")
    parser.add_argument("--threads", type=_thread_counts if several else _positive_int, default=default, help=help)


def write_json(path: str, data) -> None:
    """Write ``data`` to ``path`` as indented JSON, creating its folder."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(data, f, indent=2)


if __name__ == "__main__":
    if sys.argv[1:2] != ["--peak-memory-child"] or len(sys.argv) != 3:
        sys.exit(f"{sys.argv[0]} is a module of the benchmark tools, not a command (see its docstring)")
    _measure_in_this_process(sys.argv[2])
