#!/usr/bin/env python
"""
Criss-cross attention against non-local: FLOPs, peak memory and time of forward+backward.

The default setting is the paper's comparison: 512-channel features at 97x97 (a 769x769 crop
at output stride 8), batch 1; NL with 256 inner channels, CCA with 64 query/key channels.

Variants (all measured in one run, times interleaved):
  nl            NonLocalBlock(C, C/2): the whole block, with its projections
  cca           CrissCrossAttention(C, C/8), R=1: the whole block
  rcca          the same block applied twice (RCCA with R=2, without the 3x3 convs around it)
  cc_core       criss_cross_attention(q, k, v) alone
  cc_straight   the "straightforward" formulation of the same (permute+bmm, cat, one softmax)
  dense_core    dense softmax(Q^T K) V on the same q, k, v

FLOPs: fvcore's counter, which counts one per multiply-add (the paper counts two).
Peak memory of forward+backward: CUDA, the allocator's peak above the inputs; CPU, in a fresh
subprocess per variant, the resident-set high-water mark (VmHWM, reset through
/proc/self/clear_refs once the inputs exist) minus the resident set before the run; glibc is
told to mmap (and so return) every allocation above 64 KiB, so the resident set follows the live
tensors.
Time: median over --repeats runs (at most 3 for variants slower than 1.5 s per run), variants
interleaved, after one warm-up run each.

Usage:
  python tools/benchmark_attention.py [--size 97] [--channels 512] [--batch 1] [--device cpu]
                                      [--repeats 5] [--variants nl,cca,...] [--json]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
from torch import nn

import ccnet  # noqa: F401  (before detectron2, which ccnet.layers uses)
from ccnet.layers import (
    RCCA,
    CrissCrossAttention,
    NonLocalBlock,
    criss_cross_attention,
    criss_cross_attention_straightforward,
    FlopCountAnalysis,
    non_local_attention,
)

VARIANTS = {
    "nl": "NL block (NonLocalBlock, C/2 inner)",
    "cca": "CCA block, R=1 (CrissCrossAttention)",
    "rcca": "RCCA attention, R=2 (shared CCA block twice)",
    "cc_core": "criss_cross_attention (core)",
    "cc_straight": "straightforward CCA (core, reference)",
    "dense_core": "dense softmax(QKᵀ)V (core)",
}


HEAVY_S = 1.5  # keeps a default CPU run (where NL and the dense core take seconds) short


class _Functional(nn.Module):
    """An attention core as a module (for fvcore)."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, query, key, value):
        return self.fn(query, key, value)


class _RecurrentAttention(nn.Module):
    """Only the recurrent attention of an RCCA: what :meth:`RCCA.attend` runs."""

    def __init__(self, channels, recurrence):
        super().__init__()
        self.rcca = RCCA(channels, channels, recurrence=recurrence, norm="")

    def forward(self, x):
        return self.rcca.attend(x)


def build(name, args, size=None):
    """(module, inputs requiring grad, upstream gradient) for variant `name`."""
    size = size or args.size
    n, c, qk = args.batch, args.channels, max(args.channels // 8, 1)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, c, size, size, generator=g)
    if name in ("nl", "cca", "rcca"):
        if name == "nl":
            module = NonLocalBlock(c, max(c // 2, 1))
        elif name == "cca":
            module = CrissCrossAttention(c, qk)
        else:
            module = _RecurrentAttention(c, recurrence=2)
        for p in module.parameters():  # not the identity: every branch does real work
            if p.dim() == 1:
                nn.init.constant_(p, 0.1)
            elif not p.abs().sum():
                nn.init.normal_(p, std=0.01)
        inputs = [x]
    else:
        fn = {
            "cc_core": criss_cross_attention,
            "cc_straight": criss_cross_attention_straightforward,
            "dense_core": non_local_attention,
        }[name]
        module = _Functional(fn)
        # q, k scaled so the energies have unit variance: a realistic, not saturated softmax.
        q = torch.randn(n, qk, size, size, generator=g) / qk**0.25
        k = torch.randn(n, qk, size, size, generator=g) / qk**0.25
        inputs = [q, k, x]
    grad = torch.randn(n, c, size, size, generator=g)
    module = module.to(args.device)
    inputs = [t.to(args.device).requires_grad_() for t in inputs]
    return module, inputs, grad.to(args.device)


def forward_backward(module, inputs, grad):
    for t in list(inputs) + list(module.parameters()):
        t.grad = None
    module(*inputs).backward(grad)


def _sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def count_gflops(module, inputs):
    with torch.no_grad():
        analysis = FlopCountAnalysis(module, tuple(inputs))
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return analysis.total() / 1e9


def _proc_status_mb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak_rss():
    """Reset the resident-set high-water mark (VmHWM) to the current RSS (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def measure_memory_here(name, args):
    """Peak memory (MB) of one forward+backward above what the inputs already hold."""
    if args.device.startswith("cuda"):
        module, inputs, grad = build(name, args)
        forward_backward(module, inputs, grad)  # warm-up (cuBLAS workspaces, ...)
        for t in list(inputs) + list(module.parameters()):
            t.grad = None
        _sync(args.device)
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        forward_backward(module, inputs, grad)
        _sync(args.device)
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    # CPU, in a fresh process: load the libraries with a tiny run, then measure one real run.
    # The peak is the process' high-water mark (VmHWM) after resetting it to the current RSS.
    forward_backward(*build(name, args, size=8))
    module, inputs, grad = build(name, args)
    _reset_peak_rss()
    base = _proc_status_mb("VmRSS")
    forward_backward(module, inputs, grad)
    return _proc_status_mb("VmHWM") - base


def measure_memory(name, args):
    if args.device.startswith("cuda"):
        return measure_memory_here(name, args)
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    cmd = [sys.executable, os.path.abspath(__file__), "--measure-memory", name] + _common_args(args)
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"memory measurement of {name} failed:\n{result.stderr}")
    return float(result.stdout.strip().splitlines()[-1])


def _common_args(args):
    return [
        "--size", str(args.size), "--channels", str(args.channels), "--batch", str(args.batch),
        "--device", args.device, "--threads", str(args.threads),
    ]  # fmt: skip


def measure_times(names, args):
    """Median forward+backward time (ms) per variant, variants interleaved."""
    built = {name: build(name, args) for name in names}
    repeats = {}
    for name in names:  # warm-up; variants slower than HEAVY_S per run get at most 3 repeats
        _sync(args.device)
        start = time.perf_counter()
        forward_backward(*built[name])
        _sync(args.device)
        heavy = time.perf_counter() - start >= HEAVY_S
        repeats[name] = min(args.repeats, 3) if heavy else args.repeats
    times = {name: [] for name in names}
    for r in range(args.repeats):
        for name in (n for n in names if r < repeats[n]):
            _sync(args.device)
            start = time.perf_counter()
            forward_backward(*built[name])
            _sync(args.device)
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(t) for name, t in times.items()}


def _ratio(rows, a, b, key):
    if a in rows and b in rows and rows[b][key]:
        return f"{rows[a][key] / rows[b][key]:.3f}"
    return None


def print_markdown(rows, args, device_name):
    print(
        f"Device: {device_name}; features {args.batch}x{args.channels}x{args.size}x{args.size}; "
        f"time = median of {args.repeats} forward+backward runs (3 for runs over {HEAVY_S} s), "
        "interleaved.\n"
    )
    print("| module | GFLOPs (fvcore, 1/MAC) | peak mem fwd+bwd (MB) | time fwd+bwd (ms) |")
    print("|---|---:|---:|---:|")
    for row in rows.values():
        print(
            f"| {row['module']} | {row['gflops']:.2f} | {row['peak_mem_mb']:.0f} "
            f"| {row['time_ms']:.0f} |"
        )
    time_mem = ("time_ms", "peak_mem_mb")
    comparisons = [
        ("criss_cross_attention / straightforward", "cc_core", "cc_straight", time_mem),
        ("criss_cross_attention / dense core", "cc_core", "dense_core", time_mem),
        ("RCCA R=2 / NL block", "rcca", "nl", ("gflops", "time_ms", "peak_mem_mb")),
        ("CCA R=1 / NL block", "cca", "nl", ("gflops", "time_ms", "peak_mem_mb")),
    ]
    lines = []
    for label, a, b, keys in comparisons:
        parts = [f"{k.split('_')[0]} {r}" for k in keys if (r := _ratio(rows, a, b, k)) is not None]
        if parts:
            lines.append(f"| {label} | {', '.join(parts)} |")
    if lines:
        print("\n| ratio | value |\n|---|---|")
        print("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=97, help="feature height and width")
    parser.add_argument("--channels", type=int, default=512)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per variant")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads")
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help="comma-separated subset of the default"
    )
    parser.add_argument(
        "--json", action="store_true", help="one JSON object per variant instead of Markdown"
    )
    parser.add_argument("--measure-memory", metavar="VARIANT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.measure_memory:  # the fresh subprocess of measure_memory
        print(measure_memory_here(args.measure_memory, args))
        return
    names = [n for n in args.variants.split(",") if n]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda given but CUDA is not available")
    device_name = (
        torch.cuda.get_device_name(args.device)
        if args.device.startswith("cuda")
        else f"CPU, {args.threads} threads"
    )

    peaks = {name: measure_memory(name, args) for name in names}
    gflops = {name: count_gflops(*build(name, args)[:2]) for name in names}
    times = measure_times(names, args)
    rows = {
        name: {
            "module": VARIANTS[name],
            "key": name,
            "gflops": gflops[name],
            "peak_mem_mb": peaks[name],
            "time_ms": times[name],
            "device": device_name,
            "size": args.size,
            "channels": args.channels,
            "batch": args.batch,
        }
        for name in names
    }
    if args.json:
        for row in rows.values():
            print(json.dumps(row))
    else:
        print_markdown(rows, args, device_name)


if __name__ == "__main__":
    main()
