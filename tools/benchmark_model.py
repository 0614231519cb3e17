#!/usr/bin/env python
"""Train-step time and peak memory of Mask R-CNN R-50-FPN: baseline vs +RCCA vs +NL vs +RCCA-FPN.

All variants are built from the shipped COCO configs (random weights: the cost does not depend
on them), fed the same synthetic batch (``--size`` x ``--size`` images with a few box/mask
instances), and timed side by side: the steps of the variants are interleaved round by round
(median of ``--repeats`` after a warm-up round), reported with their ratio to the baseline.
Peak memory of one training step, above the memory in use before it, is measured in a fresh
process per variant on a second step, so gradients and optimizer state are not counted. Both
as tools/measure.py says.

Prints a Markdown table; ``--json FILE`` also writes the numbers as JSON. Examples::

    python tools/benchmark_model.py                          # CPU, 512-px images
    python tools/benchmark_model.py --device cuda --repeats 20 --json bench.json
"""
import argparse
import os
import sys

import torch
from ccnet.engine.cli import build_config
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.events import EventStorage

from measure import (
    add_device_argument,
    add_json_argument,
    add_repeats_argument,
    add_threads_argument,
    interleaved_medians,
    peak_memory_mb,
    write_json,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(ROOT, "configs", "COCO-InstanceSegmentation")
VARIANTS = {
    "baseline": "mask_rcnn_R_50_FPN_1x.yaml",
    "+RCCA (res4)": "mask_rcnn_R_50_FPN_1x_rcca.yaml",
    "+NL (res4)": "mask_rcnn_R_50_FPN_1x_nl.yaml",
    "+RCCA (FPN res5 lateral)": "mask_rcnn_R_50_FPN_1x_rcca_fpn.yaml",
}


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_device_argument(parser)
    parser.add_argument("--size", type=int, default=512, help="image height and width, pixels")
    parser.add_argument("--images-per-batch", type=int, default=1)
    add_repeats_argument(parser, default=3)
    add_threads_argument(parser)
    parser.add_argument("--instances", type=int, default=5, help="ground-truth instances per image")
    add_json_argument(parser)
    return parser


def build_variant(config_name: str, device: str):
    cfg = build_config(os.path.join(CONFIG_DIR, config_name), ["MODEL.WEIGHTS", "", "MODEL.DEVICE", device])
    model = build_model(cfg)
    model.train()
    # lr 0: the step costs the same, and the random weights (FrozenBN without statistics) stay
    # where their outputs are finite.
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.0, momentum=0.9)
    return model, optimizer


def synthetic_batch(size: int, images: int, instances: int, device: str, num_classes: int = 80):
    """``images`` random images, each with ``instances`` box-shaped ground-truth masks."""
    generator = torch.Generator().manual_seed(0)
    batch = []
    for _ in range(images):
        corners = torch.randint(0, size // 2, (instances, 2), generator=generator)
        extents = torch.randint(size // 16, size // 2, (instances, 2), generator=generator)
        boxes = torch.cat([corners, corners + extents], dim=1)
        masks = torch.zeros(instances, size, size, dtype=torch.bool)
        for mask, (x0, y0, x1, y1) in zip(masks, boxes.tolist()):
            mask[y0:y1, x0:x1] = True
        target = Instances((size, size))
        target.gt_boxes = Boxes(boxes.float())
        target.gt_classes = torch.randint(0, num_classes, (instances,), generator=generator)
        target.gt_masks = BitMasks(masks)
        image = torch.randint(0, 256, (3, size, size), generator=generator, dtype=torch.uint8).float()
        batch.append({"image": image.to(device), "instances": target.to(device), "height": size, "width": size})
    return batch


def train_step(model, optimizer, batch) -> None:
    with EventStorage():  # Detectron2's heads log to it
        losses = model(batch)
    optimizer.zero_grad()
    sum(losses.values()).backward()
    optimizer.step()


def time_variants(args) -> dict:
    """Median seconds per training step of each variant, steps interleaved round by round
    (every variant's step of a round draws the same proposal samples)."""
    models = {name: build_variant(config, args.device) for name, config in VARIANTS.items()}
    batch = synthetic_batch(args.size, args.images_per_batch, args.instances, args.device)
    steps = {name: (lambda m=model, o=optimizer: train_step(m, o, batch)) for name, (model, optimizer) in models.items()}
    return interleaved_medians(steps, args.repeats, args.device, progress=True)


def prepare_step(config_name: str, args):
    """For :func:`measure.peak_memory_mb`: a training step of the variant after one warm-up
    step (gradients and optimizer state exist from then on)."""
    model, optimizer = build_variant(config_name, args.device)
    batch = synthetic_batch(args.size, args.images_per_batch, args.instances, args.device)
    torch.manual_seed(0)
    train_step(model, optimizer, batch)
    torch.manual_seed(0)
    return lambda: train_step(model, optimizer, batch)


def measure_memory(args) -> dict:
    """Peak memory (MB) of a training step of each variant (on CPU each in a fresh process)."""
    return {name: peak_memory_mb(prepare_step, config, args, device=args.device) for name, config in VARIANTS.items()}


def markdown_table(step_seconds: dict, memory_mb: dict, args) -> str:
    baseline_time, baseline_memory = step_seconds["baseline"], memory_mb["baseline"]
    lines = [
        f"Mask R-CNN R-50-FPN training step, {args.images_per_batch} x {args.size}x{args.size} image(s), "
        f"{args.device}, median of {args.repeats} interleaved steps",
        "",
        "| model | step time (s) | vs baseline | step peak memory (MB) | vs baseline |",
        "|---|---|---|---|---|",
    ]
    for name in VARIANTS:
        lines.append(
            f"| {name} | {step_seconds[name]:.3f} | {step_seconds[name] / baseline_time:.3f}x "
            f"| {memory_mb[name]:.0f} | {memory_mb[name] / baseline_memory:.2f}x |"
        )
    return "\n".join(lines)


def main(argv=None) -> dict:
    args = argument_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"Timing {len(VARIANTS)} variants side by side on {args.device} ...", file=sys.stderr, flush=True)
    step_seconds = time_variants(args)
    print("Measuring peak memory (one process per variant) ...", file=sys.stderr, flush=True)
    memory_mb = measure_memory(args)
    print(markdown_table(step_seconds, memory_mb, args))
    results = {
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "torch_threads": torch.get_num_threads(),
        "variants": {
            name: {
                "config": f"configs/COCO-InstanceSegmentation/{VARIANTS[name]}",
                "step_seconds": step_seconds[name],
                "step_time_ratio": step_seconds[name] / step_seconds["baseline"],
                "step_peak_memory_mb": memory_mb[name],
                "memory_ratio": memory_mb[name] / memory_mb["baseline"],
            }
            for name in VARIANTS
        },
    }
    if args.json:
        write_json(args.json, results)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
