#!/usr/bin/env python
"""
The CCNet semantic model with RCCA (R=2), NL and no context (FCN): one training step and one
inference at the paper's crop, and the share of each spent in the attention.

The models are the Cityscapes configs (``configs/Cityscapes-SemanticSegmentation/``) with random
weights (cost does not depend on them), a dilated ResNet of ``--depth`` (50 by default) at
output stride 8, BN instead of SyncBN (one process), on ``--images`` random ``--size`` x
``--size`` crops with random labels. Measured in one run, variants interleaved round by round
(median of ``--rounds`` after one warm-up):

* train step: forward with the losses, backward (no optimizer step);
* inference: the network on the whole normalised image (``predict_whole_image``), no grad;
* attention: the context block's attention alone (``context.attend``: RCCA's recurrent
  criss-cross attention, NL's non-local block) on the reduced backbone feature, forward +
  backward and forward without grad; its share is its time over the model's;
* GFLOPs (fvcore, 1 per multiply-add) of one inference, model and attention, and the peak
  memory of a training step and of the attention's forward+backward (the profiler's record of
  allocations, above what existed before): :mod:`ccnet.utils.benchmark`.

Usage:
  python tools/benchmark_semantic_model.py [--size 769] [--depth 50] [--rounds 2] [--json FILE]
"""
import argparse
import json
import os
import statistics
import sys
import time

import ccnet  # noqa: F401  (first: makes Detectron2 importable and registers the project)
import torch
from ccnet.engine.cli import build_config
from ccnet.utils.benchmark import _WholeImagePredictor, module_gflops, peak_memory_mb
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

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
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds after one warm-up")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--json", metavar="FILE", help="also write every number to FILE")
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


def _sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(args):
    variants = {name: Variant(name, args) for name in args.variants}
    times = {(name, run): [] for name in variants for run in RUNS}
    for round_index in range(args.rounds + 1):  # round 0 warms up
        for name, variant in variants.items():
            for run in RUNS:
                if run.startswith("attention") and not variant.has_attention:
                    continue
                torch.manual_seed(round_index)
                _sync(args.device)
                start = time.perf_counter()
                getattr(variant, run)()
                _sync(args.device)
                if round_index:
                    times[name, run].append(time.perf_counter() - start)
        print(f"  round {round_index}/{args.rounds} done", file=sys.stderr, flush=True)
    results = {}
    for name, variant in variants.items():
        t = {run: statistics.median(times[name, run]) if times[name, run] else 0.0 for run in RUNS}
        variant.model.eval()
        flops = module_gflops(_WholeImagePredictor(variant.model), (variant.image,))
        attention_flops = flops.get("model.sem_seg_head.context.attention", 0.0)
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
            "gflops_attention": attention_flops,
            "peak_memory_mb_train_step": peak_memory_mb(variant.train_step),
            "peak_memory_mb_attention": peak_memory_mb(variant.attention_train) if variant.has_attention else 0.0,
            "feature_size": list(variant.feature.shape[1:]),
        }
        print(f"  {name} measured", file=sys.stderr, flush=True)
    return results


def markdown(results, args, load):
    lines = [
        f"CCNet semantic model, dilated R-{args.depth} OS8, {args.images} x {args.size}x{args.size} crop(s), "
        f"{args.device} ({torch.get_num_threads()} threads), median of {args.rounds} interleaved rounds; "
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


def _load():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main(argv=None):
    args = argument_parser().parse_args(argv)
    load = [_load()]
    results = measure(args)
    load.append(_load())
    print(markdown(results, args, load))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"settings": vars(args), "load_average": load, "variants": results}, f, indent=2)
    return results


if __name__ == "__main__":
    main()
