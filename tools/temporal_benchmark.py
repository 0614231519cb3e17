#!/usr/bin/env python
"""The temporal-context benchmark: 2D RCCA (T=1) against 3D RCCA (T=5) on synthetic clips.

Trains ``configs/Synthetic-Temporal/ccnet_t1.yaml`` and ``ccnet_t5.yaml`` with ``train_net.py``
(one after the other; the same network, data and iterations, only ``INPUT.CLIP.LENGTH``
differs) on ``temporal_video_train`` and writes ONE table:

* mIoU on ``temporal_video_val`` (the annotated middle frames; from each run's
  ``metrics.json``), and the trained model's pixel accuracy on the squares, whose class only
  a frame other than the annotated one shows (chance: 50%), and on the discs, whose class
  every frame shows;
* GFLOPs (fvcore, 1 multiply-add = 1 FLOP) of predicting one annotated frame from its clip:
  the context block (reduce conv + attention + project conv), the attention alone, and the
  whole model (the backbone runs on all T frames);
* peak memory of one training step (a batch of SOLVER.IMS_PER_BATCH clips) of the whole
  model, and of the attention alone at that batch and feature size: the profiler's record of
  allocations above what existed before (``ccnet.utils.benchmark.peak_memory_mb``);
* the wall time of each ``train_net.py`` run (training + evaluation; load-dependent).

Prints a Markdown table; ``--json FILE`` also writes every number. Examples::

    python tools/temporal_benchmark.py                          # ~6 min on 2 CPU cores
    python tools/temporal_benchmark.py --json output/temporal_benchmark/results.json
    python tools/temporal_benchmark.py --iters 2                # smoke test
"""
import os
import sys
from collections import OrderedDict

import ccnet  # noqa: F401  (first: makes Detectron2 importable and registers the project)
import cv2
import torch
from ccnet.data import build_dataset_mapper
from ccnet.modeling.meta_arch.video import frames_to_clips
from ccnet.utils.benchmark import run_variants_and_report, segmentor_costs, train_variant, variants_argument_parser
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(ROOT, "configs", "Synthetic-Temporal")
VARIANTS = OrderedDict([("ccnet_t1", "2D RCCA (T=1)"), ("ccnet_t5", "3D RCCA (T=5)")])


def argument_parser():
    return variants_argument_parser(__doc__, VARIANTS, "output/temporal_benchmark")


def measure_cost(cfg) -> dict:
    """GFLOPs of one clip and training-step peak memory (random weights: cost only)."""
    torch.manual_seed(0)
    model = build_model(cfg)
    mapper = build_dataset_mapper(cfg, is_train=False)  # clips with their labels, unaugmented
    batch = [mapper(d) for d in DatasetCatalog.get(cfg.DATASETS.TEST[0])[: cfg.SOLVER.IMS_PER_BATCH]]
    clip = (batch[0]["image"].float() - model.pixel_mean) / model.pixel_std
    return segmentor_costs(model, clip, batch, attention_layout=lambda x: frames_to_clips(x, len(clip)))


@torch.no_grad()
def accuracy_by_kind(cfg, weights: str) -> dict:
    """Pixel accuracy (%) of the trained model on the validation squares and discs."""
    model = build_model(cfg).eval()
    DetectionCheckpointer(model).load(weights)
    mapper = build_dataset_mapper(cfg, is_train=False)
    kinds = MetadataCatalog.get(cfg.DATASETS.TEST[0]).object_kinds
    correct, total = {k: 0 for k in kinds}, {k: 0 for k in kinds}
    for record in DatasetCatalog.get(cfg.DATASETS.TEST[0]):
        inputs = mapper(record)
        prediction = model([inputs])[0]["sem_seg"].argmax(dim=0)
        hits = (prediction == inputs["sem_seg"]).numpy()
        kind_map = cv2.imread(record["kind_file_name"], cv2.IMREAD_UNCHANGED)
        for index, kind in enumerate(kinds):
            correct[kind] += int(hits[kind_map == index].sum())
            total[kind] += int((kind_map == index).sum())
    return {f"accuracy_{kind}": 100.0 * correct[kind] / max(total[kind], 1) for kind in kinds}


def run_variant(variant: str, args) -> dict:
    config_file = os.path.join(CONFIG_DIR, f"{variant}.yaml")
    cfg, output_dir, run = train_variant(os.path.join(ROOT, "train_net.py"), config_file, VARIANTS[variant], args)
    metrics = run["metrics"]
    metadata = MetadataCatalog.get(cfg.DATASETS.TEST[0])
    return {
        "name": VARIANTS[variant],
        "config": os.path.relpath(config_file, ROOT),
        "clip_length": cfg.INPUT.CLIP.LENGTH,
        "iterations": cfg.SOLVER.MAX_ITER,
        "mIoU": metrics["sem_seg/mIoU"],
        "IoU": {c: metrics[f"sem_seg/IoU-{c}"] for c in metadata.stuff_classes},
        **accuracy_by_kind(cfg, os.path.join(output_dir, "model_final.pth")),
        **measure_cost(cfg),
        "train_and_eval_seconds": run["seconds"],
    }


def markdown_table(results: dict) -> str:
    first = next(iter(results.values()))
    _, h, w = first["feature_size"]
    lines = [
        f"temporal_video_val, {first['iterations']} iterations per variant; square accuracy: chance 50 "
        f"(their class shows only in another frame of the clip); costs per clip (features {h}x{w} per frame)",
        "",
        "| model | T | mIoU | square acc. | disc acc. | GFLOPs context (attention) "
        "| GFLOPs model | peak MB attention | peak MB train step | train + eval (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results.values():
        lines.append(
            f"| {r['name']} | {r['clip_length']} | {r['mIoU']:.1f} | {r['accuracy_square']:.1f} "
            f"| {r['accuracy_disc']:.1f} "
            f"| {r['gflops_context']:.4f} ({r['gflops_attention']:.5f}) | {r['gflops_model']:.3f} "
            f"| {r['peak_memory_mb_attention']:.2f} | {r['peak_memory_mb_model']:.0f} | {r['train_and_eval_seconds']:.0f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> dict:
    return run_variants_and_report(argument_parser().parse_args(argv), run_variant, markdown_table)


if __name__ == "__main__":
    main(sys.argv[1:])
