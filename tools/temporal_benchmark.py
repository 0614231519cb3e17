#!/usr/bin/env python
"""The temporal-context benchmark: 2D RCCA (T=1) against 3D RCCA (T=5) on synthetic clips.

Trains ``configs/Synthetic-Temporal/ccnet_t1.yaml`` and ``ccnet_t5.yaml`` with ``train_net.py``
once per seed of ``--seeds`` (default 0,1,2; one run after the other; the same network, data
and iterations, only ``INPUT.CLIP.LENGTH`` differs) on ``temporal_video_train`` and writes ONE
table, every accuracy as mean ± standard deviation over the seeds (per-seed values beside):

* mIoU on ``temporal_video_val`` (the annotated middle frames; from each run's
  ``metrics.json``), and, from the same evaluation's predictions, the pixel accuracy on the
  squares, whose class only a frame other than the annotated one shows (chance: 50%), and on
  the discs, whose class every frame shows;
* GFLOPs of predicting one annotated frame from its clip: the context block (reduce conv +
  attention + project conv), the attention alone, and the whole model (the backbone runs on
  all T frames);
* peak memory of one training step (a batch of SOLVER.IMS_PER_BATCH clips) of the whole
  model, and of the attention alone (forward + backward) at that batch and feature size;
* the wall time of each ``train_net.py`` run (training + evaluation; load-dependent).

The costs do not depend on the seed and are measured once per variant, as tools/measure.py
says (tools/segmentor_costs.py).
Prints a Markdown table; ``--json FILE`` also writes every number, per seed and aggregated
(tools/variant_runs.py). Examples::

    python tools/temporal_benchmark.py                          # ~6 min on 2 idle CPU cores (estimate)
    python tools/temporal_benchmark.py --json output/temporal_benchmark/results.json
    python tools/temporal_benchmark.py --seeds 7                # one other seed
    python tools/temporal_benchmark.py --iters 2 --seeds 0      # smoke test
"""
import os
import sys
from collections import OrderedDict

import ccnet.config  # noqa: F401  (first: Detectron2 made to work with today's libraries; the project registered)
import cv2
from detectron2.data import MetadataCatalog

from segmentor_costs import segmentor_costs
from variant_runs import (
    describe_config,
    format_mean_std,
    format_per_seed,
    predicted_label_maps,
    run_variants_and_report,
    sem_seg_predictions_file,
    train_variant,
    variant_config,
    variants_argument_parser,
)

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


def run_seed(variant: str, args, seed: int) -> dict:
    config_file = os.path.join(CONFIG_DIR, f"{variant}.yaml")
    cfg, output_dir, result = train_variant(os.path.join(ROOT, "train_net.py"), config_file, args, seed)
    dataset = cfg.DATASETS.TEST[0]
    return {**result, **accuracy_by_kind(sem_seg_predictions_file(output_dir, dataset), dataset)}


def describe_variant(variant: str, args) -> dict:
    config_file = os.path.join(CONFIG_DIR, f"{variant}.yaml")
    cfg, _ = variant_config(config_file, args)
    return {
        **describe_config(config_file, VARIANTS[variant], cfg, ROOT),
        "clip_length": cfg.INPUT.CLIP.LENGTH,
        **segmentor_costs(cfg),
    }


def markdown_table(results: list) -> str:
    first = results[0]
    _, h, w = first["feature_size"]
    seeds = ", ".join(map(str, first["seeds"]))
    lines = [
        f"temporal_video_val, {first['iterations']} iterations per variant, seeds {seeds} "
        f"(mean ± std over {len(first['seeds'])}); square accuracy: chance 50 "
        f"(their class shows only in another frame of the clip); costs per clip (features {h}x{w} per frame)",
        "",
        "| model | T | mIoU | mIoU per seed | square acc. | square acc. per seed | disc acc. | GFLOPs context (attention) "
        "| GFLOPs model | peak MB attention | peak MB train step | train + eval (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['name']} | {r['clip_length']} | {format_mean_std(r, 'mIoU')} | {format_per_seed(r, 'mIoU')} "
            f"| {format_mean_std(r, 'accuracy_square')} | {format_per_seed(r, 'accuracy_square')} "
            f"| {format_mean_std(r, 'accuracy_disc')} "
            f"| {r['gflops_context']:.4f} ({r['gflops_attention']:.5f}) | {r['gflops_model']:.3f} "
            f"| {r['peak_memory_mb_attention']:.2f} | {r['peak_memory_mb_model']:.0f} | {format_mean_std(r, 'train_and_eval_seconds', 0)} |"
        )
    return "\n".join(lines)


def main(argv=None) -> dict:
    return run_variants_and_report(argument_parser().parse_args(argv), run_seed, describe_variant, markdown_table)


if __name__ == "__main__":
    main(sys.argv[1:])
