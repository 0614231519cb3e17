#!/usr/bin/env python
"""The long-range context benchmark: FCN vs non-local vs RCCA R=1 / R=2 (/ +CCL).

Trains every ``configs/Synthetic-LongRange/*.yaml`` variant with ``train_net.py`` once per seed
of ``--seeds`` (default 0,1,2; one run after the other, the same network, data and iterations;
only the context block differs) on ``long_range_sem_seg_train`` and writes ONE table, every
accuracy as mean ± standard deviation over the seeds (the per-seed mIoU in its own column):

* mIoU on ``long_range_sem_seg_val`` (from each run's ``metrics.json``), the mIoU of the three
  cue-dependent object classes, and the pixel accuracy on objects, overall and split into
  objects *aligned* with their cue (it shares their rows or columns: one criss-cross pass
  reaches it) and *off-axis* ones (two passes needed). Chance on objects is 1/3;
* GFLOPs of one 128x128 image, for the context block (reduce conv + attention + project conv),
  for the attention alone (the only part that differs) and for the whole model;
* peak memory of one training step (a batch of SOLVER.IMS_PER_BATCH images) of the whole
  model, and of the attention alone (forward + backward) at that batch and feature size;
* the wall time of each ``train_net.py`` run (training + evaluation; load-dependent).

The costs do not depend on the seed and are measured once per variant, as tools/measure.py
says (tools/segmentor_costs.py).
Prints a Markdown table; ``--json FILE`` also writes every number, per seed and aggregated
(tools/variant_runs.py). Examples::

    python tools/context_benchmark.py                          # ~30 min on 2 idle CPU cores (estimate)
    python tools/context_benchmark.py --json output/context_benchmark/results.json
    python tools/context_benchmark.py --seeds 7 --variants rcca_r2        # one seed
    python tools/context_benchmark.py --iters 2 --seeds 0 --variants fcn rcca_r2   # smoke test
"""
import os
import sys
from collections import OrderedDict

import ccnet.config  # noqa: F401  (first: Detectron2 made to work with today's libraries; the project registered)
import numpy as np
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
CONFIG_DIR = os.path.join(ROOT, "configs", "Synthetic-LongRange")
VARIANTS = OrderedDict(
    [
        ("fcn", "FCN (no context)"),
        ("nl", "+NL"),
        ("rcca_r1", "+RCCA R=1"),
        ("rcca_r2", "+RCCA R=2"),
        ("rcca_r2_ccl", "+RCCA R=2 +CCL"),
    ]
)


def argument_parser():
    return variants_argument_parser(__doc__, VARIANTS, "output/context_benchmark")


def object_accuracy(predictions_file: str, dataset_name: str) -> dict:
    """Pixel accuracy on the objects of a dataset, overall / aligned / off-axis, in percent.

    ``predictions_file`` is SemSegEvaluator's ``sem_seg_predictions.json`` (one RLE per image
    and predicted class); object boxes and the ``aligned`` flag come from the dataset dicts.
    """
    correct = {True: 0, False: 0}
    total = {True: 0, False: 0}
    for d, prediction, _ in predicted_label_maps(predictions_file, dataset_name):
        for obj in d["objects"]:
            x0, y0, x1, y1 = obj["bbox"]
            region = prediction[y0:y1, x0:x1]
            correct[obj["aligned"]] += int((region == obj["category_id"]).sum())
            total[obj["aligned"]] += region.size
    if not total[True] + total[False]:
        raise ValueError(f"dataset '{dataset_name}' has no objects with boxes")
    return {
        "object_accuracy": 100.0 * (correct[True] + correct[False]) / (total[True] + total[False]),
        "object_accuracy_aligned": 100.0 * correct[True] / max(total[True], 1),
        "object_accuracy_off_axis": 100.0 * correct[False] / max(total[False], 1),
    }


def run_seed(variant: str, args, seed: int) -> dict:
    config_file = os.path.join(CONFIG_DIR, f"{variant}.yaml")
    cfg, output_dir, result = train_variant(os.path.join(ROOT, "train_net.py"), config_file, args, seed)
    dataset = cfg.DATASETS.TEST[0]
    metadata = MetadataCatalog.get(dataset)
    cue_classes = [metadata.stuff_classes[c] for c in metadata.cue_dependent_classes]
    return {
        **result,
        "cue_mIoU": float(np.mean([result["IoU"][c] for c in cue_classes])),
        **object_accuracy(sem_seg_predictions_file(output_dir, dataset), dataset),
    }


def describe_variant(variant: str, args) -> dict:
    config_file = os.path.join(CONFIG_DIR, f"{variant}.yaml")
    cfg, _ = variant_config(config_file, args)
    return {**describe_config(config_file, VARIANTS[variant], cfg, ROOT), **segmentor_costs(cfg)}


def markdown_table(results: list) -> str:
    first = results[0]
    seeds = ", ".join(map(str, first["seeds"]))
    lines = [
        f"long_range_sem_seg_val, {first['iterations']} iterations per variant, seeds {seeds} "
        f"(mean ± std over {len(first['seeds'])}); object accuracy: chance 33.3; "
        f"costs at 128x128 (features {first['feature_size'][0]}x{first['feature_size'][1]})",
        "",
        "| variant | mIoU | mIoU per seed | object classes mIoU | object acc. | aligned | off-axis "
        "| GFLOPs context (attention) | GFLOPs model | peak MB attention | peak MB train step | train + eval (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        cells = [format_mean_std(r, "mIoU"), format_per_seed(r, "mIoU")]
        cells += [format_mean_std(r, k) for k in ("cue_mIoU", "object_accuracy", "object_accuracy_aligned", "object_accuracy_off_axis")]
        lines.append(
            f"| {r['name']} | {' | '.join(cells)} "
            f"| {r['gflops_context']:.3f} ({r['gflops_attention']:.4f}) | {r['gflops_model']:.3f} "
            f"| {r['peak_memory_mb_attention']:.1f} | {r['peak_memory_mb_model']:.0f} | {format_mean_std(r, 'train_and_eval_seconds', 0)} |"
        )
    return "\n".join(lines)


def main(argv=None) -> dict:
    return run_variants_and_report(argument_parser().parse_args(argv), run_seed, describe_variant, markdown_table)


if __name__ == "__main__":
    main(sys.argv[1:])
