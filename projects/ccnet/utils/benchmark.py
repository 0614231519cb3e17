"""Helpers for the benchmark tools: run ``train_net.py``, count FLOPs, measure peak memory."""
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import OrderedDict
from typing import Callable, Dict, Sequence

import torch
from fvcore.nn import FlopCountAnalysis
from torch import nn
from torch.profiler._memory_profiler import Action

from ..layers import flop_count_handles

__all__ = ["run_train_net", "module_gflops", "peak_memory_mb", "run_variants_and_report"]


def run_train_net(train_net: str, config_file: str, output_dir: str, opts: Sequence[str] = (), cwd: str = None) -> Dict:
    """Run ``train_net.py --config-file CONFIG OUTPUT_DIR DIR [opts]`` in a subprocess.

    The log goes to ``output_dir/train.log``; a stale ``metrics.json`` is removed first.

    Returns:
        ``{"metrics": the last row of metrics.json that has sem_seg/mIoU, "seconds": wall time}``.

    Raises:
        RuntimeError: the run failed or wrote no evaluation (the message names the log).
    """
    os.makedirs(output_dir, exist_ok=True)
    metrics_file = os.path.join(output_dir, "metrics.json")
    if os.path.exists(metrics_file):
        os.remove(metrics_file)
    log_file = os.path.join(output_dir, "train.log")
    command = [sys.executable, train_net, "--config-file", config_file, "OUTPUT_DIR", output_dir, *opts]
    start = time.perf_counter()
    with open(log_file, "w") as log:
        code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=cwd).returncode
    seconds = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f"{' '.join(command)} failed with exit code {code}; see {log_file}")
    with open(metrics_file) as f:
        evaluations = [row for row in map(json.loads, f) if "sem_seg/mIoU" in row]
    if not evaluations:
        raise RuntimeError(f"{metrics_file} has no sem_seg/mIoU; see {log_file}")
    return {"metrics": evaluations[-1], "seconds": seconds}


@torch.no_grad()
def module_gflops(model: nn.Module, inputs: tuple) -> Dict[str, float]:
    """fvcore GFLOPs (1 multiply-add = 1 FLOP) of ``model(*inputs)``, per module name.

    The criss-cross op is counted by :func:`ccnet.layers.flop_count_handles`; ``""`` is the
    whole model. A module called several times (RCCA's shared attention) sums its calls.
    """
    analysis = FlopCountAnalysis(model, inputs).set_op_handle(**flop_count_handles())
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return {name: flops / 1e9 for name, flops in analysis.by_module().items()}


def peak_memory_mb(fn: Callable[[], None]) -> float:
    """Peak of the memory allocated by ``fn()`` above what existed before it (CPU, MB).

    Replays the PyTorch profiler's record of every tensor allocation and free during ``fn``
    (its "raw" memory timeline), so it depends neither on the allocator's caching nor on other
    processes. Tensors that existed before (parameters, inputs) are not counted.
    """
    with torch.profiler.profile(profile_memory=True, record_shapes=True, with_stack=True) as profiler:
        fn()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "memory.raw.json.gz")
        profiler.export_memory_timeline(path, device="cpu")
        with gzip.open(path, "rt") as f:
            events = json.load(f)  # [timestamp, action, bytes (negative when freed), category]
    current = peak = 0
    for _, action, num_bytes, _ in sorted(events, key=lambda event: event[0]):
        if action in (Action.CREATE.value, Action.DESTROY.value):
            current += num_bytes
            peak = max(peak, current)
    return peak / 2**20


def run_variants_and_report(args, run_variant: Callable, markdown_table: Callable) -> Dict:
    """Run ``run_variant(name, args)`` for each of ``args.variants`` in turn, print
    ``markdown_table(results)`` and, with ``args.json``, write the results (and ``args.opts``) as JSON.

    Returns:
        ``{variant: result}`` in the order run.
    """
    results = OrderedDict((variant, run_variant(variant, args)) for variant in args.variants)
    print(markdown_table(results))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"opts": args.opts, "torch_threads": torch.get_num_threads(), "variants": results}, f, indent=2)
    return results
