#!/usr/bin/env python
"""
Where ``criss_cross_attention``'s time goes: torch.profiler's self CPU time per op kind, as a
share of the whole, at the paper's setting (1x512x97x97, q/k 64 channels).

The ops are grouped by what they do for the op:

  bmm C          batched products with the value's channels (weighted sums, d value, d weights)
  bmm Cq         batched products with the query/key channels (energies, d query, d key)
  layout copies  ``copy_`` / ``clone`` / ``contiguous``: packing lines and unpacking results
  adds           adding one axis' result into the output (``add_`` / ``add``)
  softmax        max, subtract, exp, sums, divide, the -inf diagonal, the softmax backward
  other          everything else (allocation, views, dtype casts, ...)

Usage:
  python tools/profile_attention.py                        # NCHW, 1 thread, train and inference
  python tools/profile_attention.py --channels-last --threads 2 --json output/attention/profile.json
"""
import argparse
import collections
import sys

import torch
from torch.profiler import ProfilerActivity, profile

from ccnet.layers import criss_cross_attention

from measure import add_json_argument, add_threads_argument, load_average, matmul_rate, write_json

SOFTMAX_OPS = {
    "aten::amax", "aten::max", "aten::maximum", "aten::sub_", "aten::sub", "aten::exp_", "aten::exp",
    "aten::sum", "aten::div_", "aten::div", "aten::mul", "aten::mul_", "aten::log", "aten::fill_",
}
COPY_OPS = {"aten::copy_", "aten::clone", "aten::contiguous"}
ADD_OPS = {"aten::add_", "aten::add"}
BMM_OPS = {"aten::bmm", "aten::baddbmm", "aten::baddbmm_"}
KINDS = ("bmm C", "bmm Cq", "layout copies", "adds", "softmax", "other")


def op_kind(name: str, shapes, channels: int) -> str:
    """The kind (one of KINDS) of a profiled op, from its name and its inputs' shapes."""
    if name in BMM_OPS:
        dims = {d for shape in shapes for d in shape}
        return "bmm C" if channels in dims else "bmm Cq"
    if name in COPY_OPS:
        return "layout copies"
    if name in ADD_OPS:
        return "adds"
    if name in SOFTMAX_OPS:
        return "softmax"
    return "other"


def make_run(mode: str, size: int, channels: int, qk_channels: int, channels_last: bool):
    g = torch.Generator().manual_seed(0)
    q, k = (torch.randn(1, qk_channels, size, size, generator=g) for _ in range(2))
    v = torch.randn(1, channels, size, size, generator=g)
    grad = torch.randn(1, channels, size, size, generator=g)
    if channels_last:
        q, k, v, grad = (t.contiguous(memory_format=torch.channels_last) for t in (q, k, v, grad))
    if mode == "inference":
        def run():
            with torch.no_grad():
                criss_cross_attention(q, k, v)
        return run
    leaves = [t.requires_grad_() for t in (q, k, v)]

    def run():
        for t in leaves:
            t.grad = None
        criss_cross_attention(*leaves).backward(grad)
    return run


def profile_shares(mode: str, size: int, channels: int, qk_channels: int, channels_last: bool, runs: int) -> dict:
    """{kind: share of self CPU time}, plus the top ops, over `runs` runs after one warm-up."""
    run = make_run(mode, size, channels, qk_channels, channels_last)
    run()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(runs):
            run()
    per_kind, calls = collections.Counter(), collections.Counter()
    ops = []
    for event in prof.key_averages(group_by_input_shape=True):
        if event.self_cpu_time_total <= 0:
            continue
        kind = op_kind(event.key, event.input_shapes or [], channels)
        per_kind[kind] += event.self_cpu_time_total
        calls[kind] += event.count
        ops.append((event.self_cpu_time_total, event.key, str(event.input_shapes), event.count // runs, kind))
    total = sum(per_kind.values())
    ops.sort(reverse=True)
    return {
        "ms_per_run": total / 1000 / runs,
        "shares": {kind: per_kind[kind] / total for kind in KINDS},
        "calls_per_run": {kind: calls[kind] / runs for kind in KINDS},
        "top_ops": [
            {"op": op, "shapes": shapes, "calls_per_run": op_calls, "kind": kind, "share": t / total}
            for t, op, shapes, op_calls, kind in ops[:12]
        ],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=97, help="feature height and width (default 97)")
    parser.add_argument("--channels", type=int, default=512, help="value channels (default 512)")
    parser.add_argument("--qk-channels", type=int, default=64, help="query/key channels (default 64)")
    parser.add_argument("--channels-last", action="store_true", help="channels-last inputs")
    add_threads_argument(parser, default=1)
    parser.add_argument("--runs", type=int, default=4, help="profiled runs per mode (default 4)")
    parser.add_argument("--modes", default="train,inference")
    add_json_argument(parser)
    args = parser.parse_args(argv)
    if len({args.channels, args.qk_channels, args.size}) < 3:
        parser.error("--channels, --qk-channels and --size must differ: the bmm kinds are told apart by their sizes")
    torch.set_num_threads(args.threads)
    layout = "channels-last" if args.channels_last else "NCHW"
    result = {"setting": vars(args), "load_average_before": load_average(), "modes": {}}
    print(f"criss_cross_attention, 1x{args.channels}x{args.size}x{args.size} ({layout}), q/k {args.qk_channels}, "
          f"{args.threads} thread(s); load average {result['load_average_before']}", flush=True)
    for mode in args.modes.split(","):
        r = profile_shares(mode, args.size, args.channels, args.qk_channels, args.channels_last, args.runs)
        result["modes"][mode] = r
        print(f"\n{mode}: {r['ms_per_run']:.1f} ms of self CPU time per run (profiled)\n")
        print("| kind | share |\n|---|---:|")
        for kind in KINDS:
            print(f"| {kind} | {100 * r['shares'][kind]:.1f}% |")
        print("\n| op | input shapes | calls / run | kind | share |\n|---|---|---:|---|---:|")
        for op in r["top_ops"]:
            print(f"| `{op['op']}` | {op['shapes']} | {op['calls_per_run']} | {op['kind']} | {100 * op['share']:.1f}% |")
    result["load_average_after"] = load_average()
    result["matmul_gflops_1_thread"] = matmul_rate()["gflops_best"]
    print(f"\nload average after: {result['load_average_after']}; 1-thread matmul "
          f"{result['matmul_gflops_1_thread']:.0f} GFLOP/s", flush=True)
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
