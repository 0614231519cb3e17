"""Helpers for the benchmark tools: run ``train_net.py``, count FLOPs, measure peak memory."""
import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import OrderedDict
from typing import Callable, Dict, Iterator, Sequence, Tuple

import cv2
import numpy as np
import pycocotools.mask as mask_util
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_model
from torch import nn
from torch.profiler._memory_profiler import Action

from ..data import build_dataset_mapper
from ..engine.cli import build_config
from ..layers import FlopCountAnalysis

__all__ = [
    "run_train_net",
    "module_gflops",
    "peak_memory_mb",
    "segmentor_costs",
    "sem_seg_predictions_file",
    "predicted_label_maps",
    "variants_argument_parser",
    "train_variant",
    "run_variants_and_report",
]


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

    The criss-cross op is counted by :class:`ccnet.layers.FlopCountAnalysis`; ``""`` is the
    whole model. A module called several times (RCCA's shared attention) sums its calls.
    """
    analysis = FlopCountAnalysis(model, inputs)
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


class _WholeImagePredictor(nn.Module):
    """A segmentor's network on a normalised input: tensor in, logits out (for fvcore)."""

    def __init__(self, segmentor: nn.Module):
        super().__init__()
        self.model = segmentor

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model.predict_whole_image(image)


def segmentor_costs(cfg, attention_layout: Callable[[torch.Tensor], torch.Tensor] = lambda x: x) -> Dict:
    """GFLOPs of one input and training-step peak memory of the CCNet segmentor ``cfg`` builds.

    The model has random weights (seed 0): this measures cost only. Its inputs are the first
    ``SOLVER.IMS_PER_BATCH`` records of ``DATASETS.TEST[0]`` through the test-time mapper
    (images, or clips, with their labels).

    Args:
        cfg: the config of a ``CCNetSemanticSegmentor`` (or the video one) whose head has a
            ``context`` block (``reduce``, ``attention``, ``attend``).
        attention_layout: turns the reduced backbone feature of one input (frames, C, h, w)
            into the context block's attention input ((1, C, h, w); a clip's (1, C, T, h, w)).

    Returns:
        ``gflops_model``, ``gflops_context``, ``gflops_attention`` (fvcore, one input; 0 without
        attention), ``peak_memory_mb_model`` (a training step on the batch),
        ``peak_memory_mb_attention`` (forward + backward of the attention alone on a batch of
        that many feature maps) and ``feature_size`` (the attention input's spatial size).
    """
    torch.manual_seed(0)
    model = build_model(cfg)
    mapper = build_dataset_mapper(cfg, is_train=False)
    batch = [mapper(d) for d in DatasetCatalog.get(cfg.DATASETS.TEST[0])[: cfg.SOLVER.IMS_PER_BATCH]]
    first = batch[0]["image"]  # (3, H, W), or a clip (T, 3, H, W)
    image = ((first.float() - model.pixel_mean) / model.pixel_std).reshape(-1, *first.shape[-3:])

    context = model.sem_seg_head.context
    model.eval()
    flops = module_gflops(_WholeImagePredictor(model), (image,))
    with torch.no_grad():
        features = model.backbone(image)[model.sem_seg_head.in_feature]
        reduced = attention_layout(context.reduce(features))

    model.train()

    def train_step():
        sum(model(batch).values()).backward()

    attention_input = reduced.expand(len(batch), *reduced.shape[1:]).clone().requires_grad_()

    def attention_step():
        context.attend(attention_input).sum().backward()

    return {
        "gflops_model": flops[""],
        "gflops_context": flops["model.sem_seg_head.context"],
        "gflops_attention": flops.get("model.sem_seg_head.context.attention", 0.0),
        "peak_memory_mb_model": peak_memory_mb(train_step),
        "peak_memory_mb_attention": peak_memory_mb(attention_step),
        "feature_size": list(reduced.shape[2:]),
    }


def sem_seg_predictions_file(output_dir: str, dataset_name: str) -> str:
    """Where a ``train_net.py`` run in ``output_dir`` wrote SemSegEvaluator's predictions."""
    return os.path.join(output_dir, "inference", dataset_name, "sem_seg_predictions.json")


def predicted_label_maps(predictions_file: str, dataset_name: str) -> Iterator[Tuple[dict, np.ndarray, np.ndarray]]:
    """The predictions a ``train_net.py`` evaluation wrote, beside the labels, image by image.

    Args:
        predictions_file: ``SemSegEvaluator``'s ``sem_seg_predictions.json`` (one RLE per image
            and predicted class, keyed by ``file_name``).
        dataset_name: the evaluated dataset; its dicts name the images and label maps.

    Yields:
        ``(dataset dict, prediction, label)``: (H, W) int64 maps of the predicted class ids (-1
        where nothing was predicted) and of the ground truth read from ``sem_seg_file_name``.
    """
    with open(predictions_file) as f:
        predictions = json.load(f)
    by_file = {}
    for p in predictions:
        by_file.setdefault(p["file_name"], []).append(p)
    for d in DatasetCatalog.get(dataset_name):
        label = cv2.imread(d["sem_seg_file_name"], cv2.IMREAD_UNCHANGED).astype(np.int64)
        prediction = np.full(label.shape, -1)
        for p in by_file.get(d["file_name"], []):
            prediction[mask_util.decode(p["segmentation"]).astype(bool)] = p["category_id"]
        yield d, prediction, label


def variants_argument_parser(description: str, variants: Sequence[str], output_dir: str) -> argparse.ArgumentParser:
    """The command line shared by the benchmarks that train config variants with ``train_net.py``."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(variants), choices=list(variants))
    parser.add_argument("--iters", type=int, help="SOLVER.MAX_ITER for every variant (default: the configs')")
    parser.add_argument("--output-dir", default=output_dir, help="one OUTPUT_DIR per variant under it")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--opts", default=[], nargs=argparse.REMAINDER, help="config overrides for every variant")
    return parser


def train_variant(train_net: str, config_file: str, label: str, args) -> Tuple[object, str, Dict]:
    """Train and evaluate one variant with ``train_net.py`` as the parsed ``args`` say.

    Returns:
        ``(cfg, output_dir, result)``: the variant's config (with ``args.opts`` and ``--iters``),
        its OUTPUT_DIR (``args.output_dir``/<config name>) and the result fields every benchmark
        reports: ``name`` (``label``), ``config`` (relative to the repository), ``iterations``,
        ``mIoU`` and per-class ``IoU`` on ``DATASETS.TEST[0]`` (from the run's ``metrics.json``)
        and ``train_and_eval_seconds``.
    """
    opts = list(args.opts) + (["SOLVER.MAX_ITER", str(args.iters)] if args.iters else [])
    variant = os.path.splitext(os.path.basename(config_file))[0]
    output_dir = os.path.join(os.path.abspath(args.output_dir), variant)
    cfg = build_config(config_file, opts)
    root = os.path.dirname(os.path.abspath(train_net))
    print(f"{label}: training {config_file} -> {output_dir}", file=sys.stderr, flush=True)
    run = run_train_net(train_net, config_file, output_dir, opts, cwd=root)
    print(f"{label}: measuring", file=sys.stderr, flush=True)
    metrics = run["metrics"]
    result = {
        "name": label,
        "config": os.path.relpath(config_file, root),
        "iterations": cfg.SOLVER.MAX_ITER,
        "mIoU": metrics["sem_seg/mIoU"],
        "IoU": {c: metrics[f"sem_seg/IoU-{c}"] for c in MetadataCatalog.get(cfg.DATASETS.TEST[0]).stuff_classes},
        "train_and_eval_seconds": run["seconds"],
    }
    return cfg, output_dir, result
