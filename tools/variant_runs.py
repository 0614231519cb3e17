"""
Train config variants with ``train_net.py``, once per seed, and report them: the plumbing of
tools/context_benchmark.py and tools/temporal_benchmark.py.

Each variant and seed is one ``train_net.py`` process (:func:`train_variant`), ``--jobs`` at a
time; the per-seed numbers (from the run's ``metrics.json`` and its evaluation's predictions)
are aggregated into mean and sample standard deviation over the seeds (:func:`mean_and_std`),
printed as the tool's Markdown table and, with ``--json FILE``, written as JSON
(:func:`run_variants_and_report`). The seed-independent costs come from
:mod:`segmentor_costs`.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, Iterator, List, Sequence, Tuple

import cv2
import numpy as np
import pycocotools.mask as mask_util
import torch
from ccnet.engine.cli import build_config
from detectron2.data import DatasetCatalog, MetadataCatalog

from measure import add_json_argument, write_json

__all__ = [
    "run_train_net",
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
    add_json_argument(parser)
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
        write_json(args.json, results)
    return results
