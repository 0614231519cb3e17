#!/usr/bin/env python
"""
Criss-cross attention against its GEMM floor, its two public formulations and non-local:
FLOPs, peak memory and time, forward+backward ("train") and forward without grad
("inference"), at several thread counts, in one run.

The default setting is the paper's comparison: 512-channel features at 97x97 (a 769x769 crop
at output stride 8), batch 1; NL with 256 inner channels, CCA with 64 query/key channels.

Variants (all measured in one run, times interleaved round by round):
  floor         the batched products the op performs (forward; backward with the recomputed
                energies), on pre-packed contiguous tensors, back to back (attention_peers.GemmFloor)
  cc_core       criss_cross_attention(q, k, v), NCHW inputs
  cc_core_cl    the same on channels-last inputs
  cc_compile    torch.compile(criss_cross_attention), NCHW inputs
  cc_straight   the authors' "straightforward" formulation (permute + bmm per line, cat, softmax)
  cc_mmcv       mmcv's einsum formulation
  dense_core    dense softmax(Q^T K) V on the same q, k, v
  cca           CrissCrossAttention(C, C/8), R=1: the whole block
  rcca          the same block applied twice (RCCA with R=2, without the 3x3 convs around it)
  nl            NonLocalBlock(C, C/2): the whole block, with its projections

Before anything is timed, every core variant's output (and, for train, the gradients of q, k
and v) is checked against cc_core's on the same inputs: max |difference| <= 1e-5 x max(1,
max |reference|) in float32 (float16 / bfloat16 autocast: 2e-2 / 5e-2); a failure stops the run.

Measured as tools/measure.py says:
FLOPs of one forward (fvcore; one per multiply-add, the paper counts two); the floor's products
are counted by torch's FlopCounterMode (forward, or forward+backward).
Peak memory of one run above the inputs, per variant and mode (on CPU in a fresh process),
after a warm-up run at 8x8 (libraries loaded). Not measured for cc_compile (it would compile in every
process) nor for the floor (its buffers are preallocated).
Time: median over --repeats interleaved rounds (at most 3 for variants slower than 1.5 s per
run) after one warm-up round; the load average is printed before and after each setting.

Usage:
  python tools/benchmark_attention.py                      # the README table (1 and 2 threads)
  python tools/benchmark_attention.py --threads 1 --modes train --variants floor,cc_core
  python tools/benchmark_attention.py --device cuda --dtypes float32,float16,bfloat16 --batches 1,2
  options: --size --channels --batches --device --dtypes --repeats --threads --modes --variants
           --json FILE --skip-memory
"""
import argparse
import contextlib
import sys

import torch
from torch import nn

from ccnet.layers import RCCA, CrissCrossAttention, NonLocalBlock, criss_cross_attention, non_local_attention

from attention_peers import GemmFloor, criss_cross_mmcv, criss_cross_straightforward
from measure import (
    add_device_argument,
    add_json_argument,
    add_repeats_argument,
    add_threads_argument,
    gemm_gflops,
    gflops,
    interleaved_medians,
    load_average,
    peak_memory_mb,
    write_json,
)

VARIANTS = {
    "floor": "GEMM floor (the op's bmm calls, pre-packed)",
    "cc_core": "criss_cross_attention (core, NCHW)",
    "cc_core_cl": "criss_cross_attention (core, channels-last)",
    "cc_compile": "torch.compile(criss_cross_attention)",
    "cc_straight": "straightforward CCA (authors' formulation)",
    "cc_mmcv": "mmcv CCA (einsum formulation)",
    "dense_core": "dense softmax(QKᵀ)V (core)",
    "cca": "CCA block, R=1 (CrissCrossAttention)",
    "rcca": "RCCA attention, R=2 (shared CCA block twice)",
    "nl": "NL block (NonLocalBlock, C/2 inner)",
}
BLOCKS = ("cca", "rcca", "nl")
CORE_FUNCTIONS = {
    "cc_core": criss_cross_attention,
    "cc_core_cl": criss_cross_attention,
    "cc_straight": criss_cross_straightforward,
    "cc_mmcv": criss_cross_mmcv,
    "dense_core": non_local_attention,
}
PEERS = ("cc_straight", "cc_mmcv")
MODES = ("train", "inference")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# Agreement with cc_core, relative to max(1, max |reference|): the peers run their energies in
# the autocast dtype (ours in float32), so under autocast a few units of its epsilon.
TOLERANCE = {torch.float32: 1e-5, torch.float16: 2e-2, torch.bfloat16: 5e-2}
SLOW_S = 1.5  # keeps a default CPU run (where NL and the dense core take seconds) short


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


_COMPILED = {}


def _compiled_core(dynamic):
    """One compiled function per process; with `dynamic` (several batch sizes) shapes are
    symbolic, so that batch 1 and 2 share one compilation (per mode and autocast dtype)."""
    if "fn" not in _COMPILED:
        _COMPILED["fn"] = torch.compile(criss_cross_attention, dynamic=dynamic or None)
    return _COMPILED["fn"]


class Case:
    """
    One variant, built on the inputs of the setting: ``run(mode)`` runs it once (train:
    forward + backward of a fixed upstream gradient; inference: forward under no_grad),
    ``result(mode)`` returns what the agreement check compares (the output, and in train the
    gradients of the inputs).
    """

    def __init__(self, name, args, batch, dtype="float32", size=None):
        self.name = name
        self.device = args.device
        self.dtype = DTYPES[dtype]
        size = size or args.size
        n, c, qk = batch, args.channels, max(args.channels // 8, 1)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(n, c, size, size, generator=g)
        # q, k scaled so the energies have unit variance: a realistic, not saturated softmax.
        q = torch.randn(n, qk, size, size, generator=g) / qk**0.25
        k = torch.randn(n, qk, size, size, generator=g) / qk**0.25
        grad = torch.randn(n, c, size, size, generator=g).to(args.device)
        self.grad = grad
        self.floor = None
        if name == "floor":
            q, k, x = (t.to(args.device) for t in (q, k, x))
            value_dtype = torch.float32 if self.dtype == torch.float32 else self.dtype
            self.floor = GemmFloor(q, k, x, grad, value_dtype=value_dtype)
            self.module, self.inputs = None, [q, k, x]
            return
        if name in BLOCKS:
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
            if name == "cc_compile":
                fn = _compiled_core(dynamic=len(getattr(args, "batches", [batch])) > 1)
            else:
                fn = CORE_FUNCTIONS[name]
            module = _Functional(fn)
            inputs = [q, k, x]
            if name == "cc_core_cl":
                inputs = [t.contiguous(memory_format=torch.channels_last) for t in inputs]
        self.module = module.to(args.device)
        self.inputs = [t.to(args.device).requires_grad_() for t in inputs]

    def _autocast(self):
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(torch.device(self.device).type, dtype=self.dtype)

    def run(self, mode):
        if self.floor is not None:
            with self._autocast():
                (self.floor.forward_backward if mode == "train" else self.floor.forward)()
            return None
        if mode == "inference":
            with torch.no_grad(), self._autocast():
                return self.module(*self.inputs)
        for t in list(self.inputs) + list(self.module.parameters()):
            t.grad = None
        with self._autocast():
            out = self.module(*self.inputs)
        out.backward(self.grad.to(out.dtype))
        return out

    def result(self, mode):
        if self.floor is not None:
            return [self.floor.output()]
        out = self.run(mode).detach()
        return [out] + ([t.grad for t in self.inputs] if mode == "train" else [])


def check_agreement(cases, mode):
    """Max relative difference of each core variant's result to cc_core's; raises above tol."""
    ref_case = cases.get("cc_core")
    if ref_case is None:
        return {}
    reference = ref_case.result(mode)
    tol = TOLERANCE[ref_case.dtype]
    diffs = {}
    for name, case in cases.items():
        if name in BLOCKS or name in ("cc_core", "dense_core"):
            continue  # blocks compute something else; the dense core attends everywhere
        result = case.result(mode)
        worst = 0.0
        for a, b in zip(result, reference):
            scale = max(1.0, b.float().abs().max().item())
            worst = max(worst, (a.float() - b.float()).abs().max().item() / scale)
        if not worst <= tol:
            raise RuntimeError(
                f"{name} disagrees with cc_core ({mode}): max relative difference {worst:.2e}"
                f" > {tol:g}"
            )
        diffs[name] = worst
    return diffs


def count_gflops(name, args):
    """GFLOPs of one forward (the floor: of its products, per mode), batch ``args.batches[0]``."""
    if name == "floor":
        case = Case(name, args, batch=args.batches[0])
        return {mode: gemm_gflops(lambda: case.run(mode)) for mode in MODES}
    case = Case("cc_core" if name == "cc_compile" else name, args, batch=args.batches[0])
    return {"inference": gflops(case.module, tuple(case.inputs))[""], "train": None}


def prepare_measured_run(name, mode, args, batch, dtype):
    """For :func:`measure.peak_memory_mb`: a run of one variant whose inputs exist, after a
    warm-up run at 8x8 (libraries loaded, kernels chosen)."""
    Case(name, args, batch, dtype, size=8).run(mode)
    case = Case(name, args, batch, dtype)
    return lambda: case.run(mode)


def measure_memory(name, mode, args, batch, dtype):
    """Peak memory (MB) of one run above what the inputs already hold (None: not measured)."""
    if name in ("floor", "cc_compile"):
        return None
    return peak_memory_mb(prepare_measured_run, name, mode, args, batch, dtype, device=args.device)


def measure_times(cases, mode, args):
    """Median time (ms) per variant, variants interleaved round by round."""
    runs = {name: (lambda case=case: case.run(mode)) for name, case in cases.items()}
    seconds = interleaved_medians(runs, args.repeats, args.device, slow_s=SLOW_S)
    return {name: 1000 * value for name, value in seconds.items()}


def _list(text, cast=str):
    return [cast(x) for x in text.split(",") if x]


def argument_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=97, help="feature height and width")
    parser.add_argument("--channels", type=int, default=512)
    parser.add_argument("--batches", type=lambda s: _list(s, int), default=[1], help="e.g. 1,2")
    add_device_argument(parser)
    parser.add_argument(
        "--dtypes", type=_list, default=["float32"], help="float32 and/or autocast float16,bfloat16"
    )
    add_repeats_argument(parser, default=9)
    add_threads_argument(parser, default=[1, 2], several=True)
    parser.add_argument("--modes", type=_list, default=list(MODES), help="train,inference")
    parser.add_argument("--variants", type=_list, default=list(VARIANTS), help="comma-separated")
    add_json_argument(parser)
    parser.add_argument("--skip-memory", action="store_true", help="no peak-memory measurement")
    return parser


def run(args):
    """Every measurement, as a list of row dicts (one per variant and setting)."""
    cuda = args.device.startswith("cuda")
    device_name = torch.cuda.get_device_name(args.device) if cuda else "CPU"
    thread_counts = [torch.get_num_threads()] if cuda else args.threads
    gflops = {name: count_gflops(name, args) for name in args.variants}
    peaks = {}
    for name in args.variants:
        for mode in args.modes:
            for dtype in args.dtypes if cuda else args.dtypes[:1]:
                for batch in args.batches if cuda else args.batches[:1]:
                    if not args.skip_memory:
                        print(f"  peak memory: {name}, {mode}", file=sys.stderr, flush=True)
                        peaks[name, mode, dtype, batch] = measure_memory(
                            name, mode, args, batch, dtype
                        )
    rows = []
    for threads in thread_counts:
        torch.set_num_threads(threads)
        for dtype in args.dtypes:
            for batch in args.batches:
                cases = {name: Case(name, args, batch, dtype) for name in args.variants}
                for mode in args.modes:
                    print(
                        f"  timing: {threads} threads, {dtype}, batch {batch}, {mode}",
                        file=sys.stderr, flush=True,
                    )  # fmt: skip
                    diffs = check_agreement(cases, mode)
                    load_before = load_average()
                    times = measure_times(cases, mode, args)
                    for name in args.variants:
                        flops = gflops[name][mode] if name == "floor" else gflops[name]["inference"]
                        rows.append(
                            {
                                "key": name, "module": VARIANTS[name], "mode": mode,
                                "threads": None if cuda else threads, "dtype": dtype,
                                "batch": batch, "size": args.size, "channels": args.channels,
                                "device": device_name, "time_ms": times[name],
                                "time_vs_floor": times[name] / times["floor"]
                                if "floor" in times else None,
                                "gflops_forward": None if name == "floor" else flops,
                                "gflops_floor": flops if name == "floor" else None,
                                "peak_mem_mb": peaks.get((name, mode, dtype, batch)),
                                "max_rel_diff_vs_cc_core": diffs.get(name),
                                "load_average": [load_before, load_average()],
                            }
                        )  # fmt: skip
                del cases
    return rows


def _fmt(x, spec):
    return "–" if x is None else format(x, spec)


def markdown(rows, args):
    """
    The README table: per setting (threads, dtype, batch, mode) a row with every core
    variant's time and its multiple of the floor, ours against the faster peer; then FLOPs and
    peak memory per variant; then the blocks.
    """
    by = {(r["key"], r["mode"], r["threads"], r["dtype"], r["batch"]): r for r in rows}
    settings = []  # in the order run
    for r in rows:
        setting = (r["threads"], r["dtype"], r["batch"], r["mode"])
        if setting not in settings:
            settings.append(setting)
    loads = [r["load_average"] for r in rows]
    lines = [
        f"{rows[0]['device']}; features N x {args.channels} x {args.size} x {args.size}, q/k "
        f"{max(args.channels // 8, 1)}; time in ms (multiple of the floor), median of "
        f"{args.repeats} interleaved rounds; load average (1, 5, 15 min) {loads[0][0]} at the "
        f"start, {loads[-1][1]} at the end\n"
    ]

    def label(threads, dtype, batch, mode):
        parts = [f"{threads} thr" if threads else None]
        parts += [dtype if len(args.dtypes) > 1 else None]
        parts += [f"batch {batch}" if len(args.batches) > 1 else None, mode]
        return ", ".join(p for p in parts if p)

    cores = [n for n in args.variants if n not in BLOCKS and n != "dense_core"]
    peers = [p for p in PEERS if p in cores]
    header = ["setting"] + [f"`{n}`" for n in cores]
    if peers:
        header.append("faster peer / `cc_core`")
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|---" * len(header) + "|")
    for threads, dtype, batch, mode in settings:
        cells = [label(threads, dtype, batch, mode)]
        for name in cores:
            r = by[(name, mode, threads, dtype, batch)]
            cells.append(f"{r['time_ms']:.1f} ({r['time_vs_floor']:.2f})")
        if peers:
            ours = by[("cc_core", mode, threads, dtype, batch)]
            fastest = min(
                (by[(p, mode, threads, dtype, batch)] for p in peers), key=lambda r: r["time_ms"]
            )
            cells.append(f"{fastest['time_ms'] / ours['time_ms']:.2f} (`{fastest['key']}`)")
        lines.append("| " + " | ".join(cells) + " |")

    threads, dtype, batch, _ = settings[0]
    lines.append("")
    lines.append(
        f"GFLOPs (1 per multiply-add; fvcore, one forward; the floor: its products, train / "
        f"inference) and peak memory above the inputs ({dtype}, batch {batch}):\n"
    )
    lines.append("| variant | GFLOPs | peak MB train | peak MB inference |")
    lines.append("|---|---:|---:|---:|")
    for name in args.variants:
        r = {m: by.get((name, m, threads, dtype, batch)) for m in MODES}
        first = next(x for x in r.values() if x)
        if name == "floor":  # its own products: forward+backward / forward
            flops = " / ".join(_fmt(r[m] and r[m]["gflops_floor"], ".2f") for m in MODES)
        else:
            flops = _fmt(first["gflops_forward"], ".2f")
        lines.append(
            f"| {VARIANTS[name]} `{name}` | {flops}"
            + "".join(f" | {_fmt(r[m] and r[m]['peak_mem_mb'], '.0f')}" for m in MODES)
            + " |"
        )
    for a, b in (("rcca", "nl"), ("cca", "nl"), ("cc_core", "dense_core"), ("cc_core", "cc_straight")):
        for mode in args.modes:
            ra, rb = by.get((a, mode, threads, dtype, batch)), by.get((b, mode, threads, dtype, batch))
            if not (ra and rb):
                continue
            parts = [f"time {ra['time_ms'] / rb['time_ms']:.3f}"]
            if ra["gflops_forward"] and rb["gflops_forward"]:
                parts.insert(0, f"GFLOPs {ra['gflops_forward'] / rb['gflops_forward']:.3f}")
            if ra["peak_mem_mb"] and rb["peak_mem_mb"]:
                parts.append(f"peak {ra['peak_mem_mb'] / rb['peak_mem_mb']:.3f}")
            lines.append(f"\n`{a}` / `{b}`, {label(threads, dtype, batch, mode)}: {', '.join(parts)}")
    return "\n".join(lines)


def main(argv=None):
    parser = argument_parser()
    args = parser.parse_args(argv)
    unknown = [n for n in args.variants if n not in VARIANTS]
    unknown += [m for m in args.modes if m not in MODES]
    unknown += [d for d in args.dtypes if d not in DTYPES]
    if unknown:
        parser.error(f"unknown variant, mode or dtype {unknown}; see --help")
    if "cc_core" not in args.variants or "floor" not in args.variants:
        parser.error("--variants must include floor and cc_core (the references of every ratio)")
    rows = run(args)
    print(markdown(rows, args))
    if args.json:
        write_json(args.json, {"settings": vars(args), "rows": rows})
    return rows


if __name__ == "__main__":
    main()
