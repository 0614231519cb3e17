#!/usr/bin/env python
"""The quickstart behind ``make demo``: train RCCA Mask R-CNN on synthetic shapes on the CPU.

1. generates the synthetic COCO-format dataset (``shapes_instances_{train,val}``) under
   ``$DETECTRON2_DATASETS`` (default ``./datasets``) unless it is already there;
2. trains ``configs/Quickstart/mask_rcnn_rcca_shapes.yaml`` from scratch with ``train_net.py``,
   which evaluates box and mask AP on the val split with COCOEvaluator (pycocotools) and writes
   ``output/demo/metrics.json``;
3. draws predictions on val images into ``output/demo/visualizations/`` with ``tools/demo.py``;
4. prints a summary: AP, time, where everything is.

Extra arguments are config overrides passed to ``train_net.py``, e.g.
``python tools/run_demo.py SOLVER.MAX_ITER 100`` for a quick smoke run; ``--output-dir`` and
``--config-file`` choose another folder and config.

Training runs in ``--num-cpu-workers`` processes (default: 2, or 1 on a one-core machine), the
cores shared out between them (``train_net.py --num-cpu-workers``; ``SOLVER.IMS_PER_BATCH`` is
the total over the processes). The quickstart's model is small: on 2 cores, two one-thread
processes train it faster than one process with two threads.
"""
import argparse
import json
import os
import subprocess
import sys
import time

from ccnet.utils.files import datasets_root

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = "configs/Quickstart/mask_rcnn_rcca_shapes.yaml"
OUTPUT_DIR = "output/demo"
NUM_VISUALIZATIONS = 8
TARGET_SEGM_AP = 50.0


def run(command):
    print("+ " + " ".join(command), flush=True)
    # OpenMP threads that spin while waiting make PyTorch many times slower as soon as anything
    # else uses the cores (measured: >10x on 2 busy cores); passive waiting costs little.
    env = dict(os.environ)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    subprocess.run(command, cwd=ROOT, env=env, check=True)


def final_metrics(output_dir: str) -> dict:
    """The last row of Detectron2's metrics.json that has evaluation results."""
    rows = []
    with open(os.path.join(ROOT, output_dir, "metrics.json")) as f:
        for line in f:
            if line.strip():
                rows.append(json.loads(line))
    evaluated = [row for row in rows if "segm/AP" in row]
    if not evaluated:
        raise RuntimeError(f"{output_dir}/metrics.json has no evaluation results (segm/AP)")
    return evaluated[-1]


def default_num_workers() -> int:
    return min(2, os.cpu_count() or 1)


def main(overrides, config=CONFIG, output_dir=OUTPUT_DIR, num_workers=None) -> int:
    num_workers = default_num_workers() if num_workers is None else num_workers
    start = time.perf_counter()
    datasets = datasets_root()
    print(f"[1/3] Synthetic shapes dataset under {datasets}/shapes_instances (generated on first use)", flush=True)
    run([sys.executable, "-c", "import ccnet.data; from detectron2.data import DatasetCatalog; "
         "[DatasetCatalog.get(f'shapes_instances_{s}') for s in ('train', 'val')]"])
    print("[2/3] Training RCCA Mask R-CNN from scratch, then COCO evaluation on the val split", flush=True)
    data_done = time.perf_counter()
    run([sys.executable, "train_net.py", "--config-file", config, "--num-cpu-workers", str(num_workers),
         "OUTPUT_DIR", output_dir, *overrides])  # fmt: skip
    train_done = time.perf_counter()
    print("[3/3] Drawing predictions on val images", flush=True)
    images = [os.path.join(datasets, "shapes_instances", "val", f"{i:06d}.png") for i in range(NUM_VISUALIZATIONS)]
    visualizations = os.path.join(output_dir, "visualizations")
    run([sys.executable, "tools/demo.py", "--config-file", config, "--input", *images, "--output", visualizations,
         "--scale", "3", "--opts", "MODEL.WEIGHTS", os.path.join(output_dir, "model_final.pth"), *overrides])

    metrics = final_metrics(output_dir)
    total = time.perf_counter() - start
    segm_ap, bbox_ap = metrics["segm/AP"], metrics["bbox/AP"]
    verdict = "reached" if segm_ap >= TARGET_SEGM_AP else "MISSED"
    print(
        "\n".join(
            [
                "",
                "=" * 72,
                "CCNet quickstart: RCCA Mask R-CNN trained from scratch on synthetic shapes",
                f"  val box AP  {bbox_ap:6.2f}   (COCO AP@[.5:.95], pycocotools)",
                f"  val mask AP {segm_ap:6.2f}   (target >= {TARGET_SEGM_AP:.0f}: {verdict})",
                f"  time        {total / 60:6.1f} min (data {(data_done - start) / 60:.1f}, training + evaluation "
                f"{(train_done - data_done) / 60:.1f}, drawing {(total - (train_done - start)) / 60:.1f})",
                f"  metrics     {os.path.join(output_dir, 'metrics.json')}",
                f"  model       {os.path.join(output_dir, 'model_final.pth')}",
                f"  pictures    {visualizations}/*.png",
                f"  log         {os.path.join(output_dir, 'log.txt')}",
                f"  config      {config}",
                "=" * 72,
            ]
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Train, evaluate and draw the CPU quickstart (make demo).")
    parser.add_argument("--config-file", default=CONFIG, help=f"default {CONFIG}")
    parser.add_argument("--output-dir", default=OUTPUT_DIR, help=f"default {OUTPUT_DIR}")
    parser.add_argument(
        "--num-cpu-workers", type=int, default=None,
        help=f"training processes (default {default_num_workers()} here: min(2, cores))",
    )  # fmt: skip
    parser.add_argument("overrides", nargs=argparse.REMAINDER, help="config overrides for train_net.py: KEY VALUE ...")
    args = parser.parse_args()
    sys.exit(main(args.overrides, args.config_file, args.output_dir, args.num_cpu_workers))
