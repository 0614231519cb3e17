"""Helpers for the benchmark tools: run ``train_net.py``, count FLOPs, measure peak memory."""
import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, Iterator, List, Sequence, Tuple

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
    "parse_seeds",
    "variants_argument_parser",
    "variant_config",
    "describe_config",
    "train_variant",
    "mean_and_std",
    "format_mean_std",
    "format_per_seed",
    "run_variants_and_report",
]


def run_train_net(
    train_net: str, config_file: str, output_dir: str, opts: Sequence[str] = (), cwd: str = None, threads: int = None
) -> Dict:
    """Run ``train_net.py --config-file CONFIG OUTPUT_DIR DIR [opts]`` in a subprocess
    (with ``OMP_NUM_THREADS=threads`` unless the environment sets it).

    The log goes to ``output_dir/train.log``; a stale ``metrics.json`` is removed first.

    Returns:
        ``{"metrics": the last row of metrics.json that has sem_seg/mIoU, "seconds": wall time,
        "attention": the last logged ``attention/...`` scalars (``gamma``, ``entropy``,
        ``residual`` of each criss-cross block; {} without one)}``.

    Raises:
        RuntimeError: the run failed or wrote no evaluation (the message names the log).
    """
    os.makedirs(output_dir, exist_ok=True)
    metrics_file = os.path.join(output_dir, "metrics.json")
    if os.path.exists(metrics_file):
        os.remove(metrics_file)
    log_file = os.path.join(output_dir, "train.log")
    command = [sys.executable, train_net, "--config-file", config_file, "OUTPUT_DIR", output_dir, *opts]
    env = dict(os.environ)
    if threads is not None:
        env.setdefault("OMP_NUM_THREADS", str(threads))
    start = time.perf_counter()
    with open(log_file, "w") as log:
        code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env=env).returncode
    seconds = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f"{' '.join(command)} failed with exit code {code}; see {log_file}")
    with open(metrics_file) as f:
        rows = [json.loads(line) for line in f]
    evaluations = [row for row in rows if "sem_seg/mIoU" in row]
    if not evaluations:
        raise RuntimeError(f"{metrics_file} has no sem_seg/mIoU; see {log_file}")
    attention = {}
    for row in rows:
        attention.update({k[len("attention/") :]: v for k, v in row.items() if k.startswith("attention/")})
    return {"metrics": evaluations[-1], "seconds": seconds, "attention": attention}


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


def mean_and_std(per_seed: Sequence[Dict]) -> Tuple[Dict, Dict]:
    """Mean and sample standard deviation (n - 1; 0 for one seed) over seeds of every number
    in the per-seed results, nested dicts (per-class IoU) included; ``seed`` and non-numbers
    are left out.

    Returns:
        ``(mean, std)``, two dicts shaped like one per-seed result.
    """
    first = per_seed[0]
    mean, std = {}, {}
    for key, value in first.items():
        if key == "seed":
            continue
        if isinstance(value, dict):
            mean[key], std[key] = mean_and_std([r[key] for r in per_seed])
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            values = np.array([r[key] for r in per_seed], dtype=np.float64)
            mean[key] = float(values.mean())
            std[key] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return mean, std


def format_mean_std(result: Dict, key: str, digits: int = 1) -> str:
    """``"mean ± std"`` of ``result[key]`` over its seeds (only the mean for one seed)."""
    mean = f"{result['mean'][key]:.{digits}f}"
    return mean if len(result["per_seed"]) == 1 else f"{mean} ± {result['std'][key]:.{digits}f}"


def format_per_seed(result: Dict, key: str, digits: int = 1) -> str:
    """The per-seed values of ``result[key]``, in seed order: ``"93.3 / 62.1 / 62.1"``."""
    return " / ".join(f"{r[key]:.{digits}f}" for r in result["per_seed"])


def run_variants_and_report(args, run_seed: Callable, describe_variant: Callable, markdown_table: Callable) -> list:
    """Train every variant of ``args.variants`` on every seed of ``args.seeds``, aggregate, report.

    ``run_seed(variant, args, seed)`` trains and evaluates one variant with one seed and
    returns its numbers (``seed``, ``mIoU``, ...), ``args.jobs`` runs at a time (threads, each
    waiting on its ``train_net.py`` process); ``describe_variant(variant, args)`` returns what
    does not depend on the seed (name, config, costs), called afterwards, one at a time.
    Prints ``markdown_table(results)`` and, with ``args.json``, writes ``results`` as JSON.

    Returns:
        one dict per variant, in the order run: ``variant`` (the config's name), the fields
        of ``describe_variant``, ``seeds``, ``per_seed`` (the ``run_seed`` results),
        ``mean`` and ``std`` (:func:`mean_and_std` of ``per_seed``), ``opts`` and
        ``torch_threads``.
    """
    runs = [(variant, seed) for variant in args.variants for seed in args.seeds]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:  # each run is a train_net.py process
        finished = dict(zip(runs, pool.map(lambda run: run_seed(run[0], args, run[1]), runs)))
    results = []
    for variant in args.variants:
        per_seed = [finished[(variant, seed)] for seed in args.seeds]
        mean, std = mean_and_std(per_seed)
        results.append(
            {
                "variant": variant,
                **describe_variant(variant, args),
                "seeds": list(args.seeds),
                "per_seed": per_seed,
                "mean": mean,
                "std": std,
                "opts": list(args.opts),
                "jobs": args.jobs,
                "torch_threads": torch.get_num_threads(),
            }
        )
    print(markdown_table(results))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
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


def parse_seeds(text: str) -> List[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]`` (for ``--seeds``); an error names what is not a seed."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes comma-separated integers, e.g. 0,1,2; got {text!r}")
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"--seeds needs at least one seed and no repeats, got {text!r}")
    return seeds


def variants_argument_parser(description: str, variants: Sequence[str], output_dir: str) -> argparse.ArgumentParser:
    """The command line shared by the benchmarks that train config variants with ``train_net.py``."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(variants), choices=list(variants))
    parser.add_argument(
        "--seeds", type=parse_seeds, default=[0, 1, 2], help="comma-separated SEED values; each variant trains once per seed"
    )
    parser.add_argument(
        "--jobs", type=int, default=1,
        help="train_net.py runs at a time (each gets OMP_NUM_THREADS = CPUs // jobs unless set; "
        "wall times then include the sharing)",
    )  # fmt: skip
    parser.add_argument("--iters", type=int, help="SOLVER.MAX_ITER for every variant (default: the configs')")
    parser.add_argument("--output-dir", default=output_dir, help="one OUTPUT_DIR per variant and seed under it")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--opts", default=[], nargs=argparse.REMAINDER, help="config overrides for every variant")
    return parser


def variant_config(config_file: str, args):
    """The config of a variant as the parsed ``args`` say (``args.opts``, ``--iters``), and those opts."""
    opts = list(args.opts) + (["SOLVER.MAX_ITER", str(args.iters)] if args.iters else [])
    if "SEED" in opts[::2]:
        raise ValueError("give seeds with --seeds, not --opts SEED")
    return build_config(config_file, opts), opts


def describe_config(config_file: str, label: str, cfg, root: str) -> Dict:
    """The seed-independent result fields: ``name`` (``label``), ``config`` (relative to the
    repository ``root``) and ``iterations``."""
    return {"name": label, "config": os.path.relpath(config_file, root), "iterations": cfg.SOLVER.MAX_ITER}


def train_variant(train_net: str, config_file: str, args, seed: int) -> Tuple[object, str, Dict]:
    """Train and evaluate one variant with one ``SEED`` with ``train_net.py`` as the parsed ``args`` say.

    Returns:
        ``(cfg, output_dir, result)``: the variant's config (with ``args.opts``, ``--iters`` and
        the seed), its OUTPUT_DIR (``args.output_dir``/<config name>/seed_<seed>) and the
        per-seed result fields every benchmark reports: ``seed``, ``mIoU`` and per-class
        ``IoU`` on ``DATASETS.TEST[0]`` (from the run's ``metrics.json``),
        ``train_and_eval_seconds`` and ``attention`` (the attention's state at the last
        logged iteration, see :func:`run_train_net`).
    """
    cfg, opts = variant_config(config_file, args)
    opts += ["SEED", str(seed)]
    cfg.defrost()
    cfg.SEED = seed
    cfg.freeze()
    variant = os.path.splitext(os.path.basename(config_file))[0]
    output_dir = os.path.join(os.path.abspath(args.output_dir), variant, f"seed_{seed}")
    root = os.path.dirname(os.path.abspath(train_net))
    print(f"{variant}, seed {seed}: training {config_file} -> {output_dir}", file=sys.stderr, flush=True)
    threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else None
    run = run_train_net(train_net, config_file, output_dir, opts, cwd=root, threads=threads)
    metrics = run["metrics"]
    result = {
        "seed": seed,
        "mIoU": metrics["sem_seg/mIoU"],
        "IoU": {c: metrics[f"sem_seg/IoU-{c}"] for c in MetadataCatalog.get(cfg.DATASETS.TEST[0]).stuff_classes},
        "train_and_eval_seconds": run["seconds"],
        "attention": run["attention"],
    }
    return cfg, output_dir, result
