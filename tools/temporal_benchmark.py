#!/usr/bin/env python
"""The temporal-context benchmark: 2D RCCA (T=1) against 3D RCCA (T=5) on synthetic clips.

Trains ``configs/Synthetic-Temporal/ccnet_t1.yaml`` and ``ccnet_t5.yaml`` with ``train_net.py``
(one after the other; the same network, data and iterations, only ``INPUT.CLIP.LENGTH``
differs) on ``temporal_video_train`` and writes ONE table:

* mIoU on ``temporal_video_val`` (the annotated middle frames; from each run's
  ``metrics.json``), and, from the same evaluation's predictions, the pixel accuracy on the
  squares, whose class only a frame other than the annotated one shows (chance: 50%), and on
  the discs, whose class every frame shows;
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
from ccnet.layers import frames_to_clips
from ccnet.utils.benchmark import (
    predicted_label_maps,
    run_variants_and_report,
    segmentor_costs,
    sem_seg_predictions_file,
    train_variant,
    variants_argument_parser,
)
from detectron2.data import MetadataCatalog

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(ROOT, "configs", "Synthetic-Temporal")
VARIANTS = OrderedDict([("ccnet_t1", "2D RCCA (T=1)"), ("ccnet_t5", "3D RCCA (T=5)")])


def argument_parser():
    return variants_argument_parser(__doc__, VARIANTS, "output/temporal_benchmark")


def accuracy_by_kind(predictions_file: str, dataset_name: str) -> dict:
    """Pixel accuracy (%) of the evaluated predictions on the background, discs and squares.

    ``predictions_file`` is the run's SemSegEvaluator ``sem_seg_predictions.json``; each
    annotated frame's label map and map of object kinds come from its dataset dict.
    """
    kinds = MetadataCatalog.get(dataset_name).object_kinds
    correct, total = {k: 0 for k in kinds}, {k: 0 for k in kinds}
    for record, prediction, label in predicted_label_maps(predictions_file, dataset_name):
        hits = prediction == label
        kind_map = cv2.imread(record["kind_file_name"], cv2.IMREAD_UNCHANGED)
        for index, kind in enumerate(kinds):
            correct[kind] += int(hits[kind_map == index].sum())
            total[kind] += int((kind_map == index).sum())
    return {f"accuracy_{kind}": 100.0 * correct[kind] / max(total[kind], 1) for kind in kinds}


def run_variant(variant: str, args) -> dict:
    config_file = os.path.join(CONFIG_DIR, f"{variant}.yaml")
    cfg, output_dir, result = train_variant(os.path.join(ROOT, "train_net.py"), config_file, VARIANTS[variant], args)
    dataset = cfg.DATASETS.TEST[0]
    return {
        **result,
        "clip_length": cfg.INPUT.CLIP.LENGTH,
        **accuracy_by_kind(sem_seg_predictions_file(output_dir, dataset), dataset),
        **segmentor_costs(cfg, attention_layout=lambda x: frames_to_clips(x, cfg.INPUT.CLIP.LENGTH)),
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
