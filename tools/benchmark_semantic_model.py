#!/usr/bin/env python
"""
The CCNet semantic model with RCCA (R=2), NL and no context (FCN): one training step and one
inference at the paper's crop, and the share of each spent in the attention.

The models are the Cityscapes configs (``configs/Cityscapes-SemanticSegmentation/``) with random
weights (cost does not depend on them), a dilated ResNet of ``--depth`` (50 by default) at
output stride 8, BN instead of SyncBN (one process), on ``--images`` random ``--size`` x
``--size`` crops with random labels. Measured in one run, variants interleaved round by round
(median of ``--repeats`` after one warm-up round), as tools/measure.py says:

* train step: forward with the losses, backward (no optimizer step);
* inference: the network on the whole normalised image (``predict_whole_image``), no grad;
* attention: the context block's attention alone (``context.attend``: RCCA's recurrent
  criss-cross attention, NL's non-local block) on the reduced backbone feature, forward +
  backward and forward without grad; its share is its time over the model's;
* GFLOPs of one inference, model and attention, and the peak memory of a training step and of
  the attention's forward+backward, each after one warm-up run (on CPU in a fresh process).

Usage:
  python tools/benchmark_semantic_model.py [--size 769] [--depth 50] [--repeats 2] [--threads N] [--json FILE]
"""
import argparse
import os
import sys

import torch
from ccnet.engine.cli import build_config
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from measure import (
    add_device_argument,
    add_json_argument,
    add_repeats_argument,
    add_threads_argument,
    interleaved_medians,
    load_average,
    peak_memory_mb,
    write_json,
)
from segmentor_costs import segmentor_gflops

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(ROOT, "configs", "Cityscapes-SemanticSegmentation")
VARIANTS = {
    "fcn": ("FCN (no context)", "fcn_R_101_OS8_60k.yaml"),
    "nl": ("+NL", "nl_R_101_OS8_60k.yaml"),
    "rcca_r2": ("+RCCA R=2 (CCNet)", "rcca_r2_R_101_OS8_60k.yaml"),
}


def argument_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=769, help="crop height and width, pixels")
    parser.add_argument("--depth", type=int, default=50, choices=[50, 101])
    parser.add_argument("--images", type=int, default=1, help="images per training step")
    add_repeats_argument(parser, default=2)
    add_threads_argument(parser)
    add_device_argument(parser)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    add_json_argument(parser)
    return parser


class Variant:
    """One model, its synthetic batch, and the four timed runs."""

    def __init__(self, name, args):
        opts = [
            "MODEL.WEIGHTS", "", "MODEL.DEVICE", args.device, "MODEL.RESNETS.DEPTH", str(args.depth),
            "MODEL.RESNETS.NORM", "BN", "MODEL.SEM_SEG_HEAD.NORM", "BN", "MODEL.CONTEXT.NORM", "BN",
        ]  # fmt: skip
        self.cfg = build_config(os.path.join(CONFIG_DIR, VARIANTS[name][1]), opts)
        torch.manual_seed(0)
        self.model = build_model(self.cfg)
        g = torch.Generator().manual_seed(0)
        num_classes = self.cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
        self.batch = [
            {
                "image": torch.randint(0, 256, (3, args.size, args.size), generator=g, dtype=torch.uint8),
                "sem_seg": torch.randint(0, num_classes, (args.size, args.size), generator=g),
                "height": args.size,
                "width": args.size,
            }
            for _ in range(args.images)
        ]
        image = self.batch[0]["image"].to(self.model.device).float()
        self.image = ((image - self.model.pixel_mean) / self.model.pixel_std)[None]
        context = self.model.sem_seg_head.context
        self.context = context
        self.model.eval()
        with torch.no_grad():
            feature = context.reduce(self.model.backbone(self.image)[self.model.sem_seg_head.in_feature])
        self.feature = feature.expand(args.images, *feature.shape[1:]).clone().requires_grad_()
        self.has_attention = not isinstance(context.attention, torch.nn.Identity)

    def train_step(self):
        self.model.train()
        with EventStorage():
            losses = self.model(self.batch)
        sum(losses.values()).backward()
        self.model.zero_grad(set_to_none=True)

    def inference(self):
        self.model.eval()
        with torch.no_grad():
            self.model.predict_whole_image(self.image)

    def attention_train(self):
        self.context.train()
        self.context.attend(self.feature).sum().backward()
        self.feature.grad = None
        self.context.zero_grad(set_to_none=True)

    def attention_inference(self):
        self.context.eval()
        with torch.no_grad():
            self.context.attend(self.feature[:1])


RUNS = ("train_step", "inference", "attention_train", "attention_inference")


def prepare_run(name, run, args):
    """For :func:`measure.peak_memory_mb`: ``run`` of a fresh :class:`Variant` after one
    warm-up call."""
    variant = Variant(name, args)
    getattr(variant, run)()
    return getattr(variant, run)


def measure(args):
    variants = {name: Variant(name, args) for name in args.variants}
    runs = {
        (name, run): getattr(variant, run)
        for name, variant in variants.items()
        for run in RUNS
        if variant.has_attention or not run.startswith("attention")
    }
    seconds = interleaved_medians(runs, args.repeats, args.device, progress=True)
    results = {}
    for name, variant in variants.items():
        t = {run: seconds.get((name, run), 0.0) for run in RUNS}
        flops = segmentor_gflops(variant.model, variant.image)
        results[name] = {
            "name": VARIANTS[name][0],
            "config": os.path.join("configs", "Cityscapes-SemanticSegmentation", VARIANTS[name][1]),
            "train_step_s": t["train_step"],
            "inference_s": t["inference"],
            "attention_train_s": t["attention_train"],
            "attention_inference_s": t["attention_inference"],
            "attention_share_train": t["attention_train"] / t["train_step"],
            "attention_share_inference": t["attention_inference"] / t["inference"],
            "gflops_model": flops[""],
            "gflops_attention": flops.get("sem_seg_head.context.attention", 0.0),
            "peak_memory_mb_train_step": peak_memory_mb(prepare_run, name, "train_step", args, device=args.device),
            "peak_memory_mb_attention": (
                peak_memory_mb(prepare_run, name, "attention_train", args, device=args.device) if variant.has_attention else 0.0
            ),
            "feature_size": list(variant.feature.shape[1:]),
        }
        print(f"  {name} measured", file=sys.stderr, flush=True)
    return results


def markdown(results, args, load):
    lines = [
        f"CCNet semantic model, dilated R-{args.depth} OS8, {args.images} x {args.size}x{args.size} crop(s), "
        f"{args.device} ({torch.get_num_threads()} threads), median of {args.repeats} interleaved rounds; "
        f"load average {load[0]} at the start, {load[1]} at the end\n",
        "| model | GFLOPs model | GFLOPs attention | train step s | attention share | "
        "inference s | attention share | train peak MB | attention peak MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results.values():
        lines.append(
            f"| {r['name']} | {r['gflops_model']:.1f} | {r['gflops_attention']:.2f} | {r['train_step_s']:.2f} "
            f"| {100 * r['attention_share_train']:.1f}% | {r['inference_s']:.2f} "
            f"| {100 * r['attention_share_inference']:.1f}% | {r['peak_memory_mb_train_step']:.0f} "
            f"| {r['peak_memory_mb_attention']:.0f} |"
        )
    if "rcca_r2" in results and "nl" in results:
        a, b = results["rcca_r2"], results["nl"]
        lines.append(
            f"\nRCCA / NL: model GFLOPs {a['gflops_model'] / b['gflops_model']:.3f}, train step "
            f"{a['train_step_s'] / b['train_step_s']:.3f}, inference {a['inference_s'] / b['inference_s']:.3f}, "
            f"train peak memory {a['peak_memory_mb_train_step'] / b['peak_memory_mb_train_step']:.3f}"
        )
    return "\n".join(lines)


def main(argv=None):
    args = argument_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    load = [load_average()]
    results = measure(args)
    load.append(load_average())
    print(markdown(results, args, load))
    if args.json:
        write_json(args.json, {"settings": vars(args), "load_average": load, "variants": results})
    return results


if __name__ == "__main__":
    main()
