#!/usr/bin/env python
"""
Inference time of exported models in onnxruntime (CPU) against PyTorch eager, side by side.

Variants (each exported with ``ccnet.export``'s formulation, checked against eager first):
  rcca_block   the CCNet head's context module with RCCA, R=2 (3x3 reduce 2048->512,
               criss-cross attention twice, 3x3 project) on a (1, 2048, S, S) feature
  nl_block     the same module with a non-local block in place of the attention
  ccnet_r2     the whole CCNet semantic model (Cityscapes R=2 config, ResNet-101 OS8),
               whole-image inference of an image of --image-size (feature S = size / 8)

Time: median over --repeats rounds, the eager and onnxruntime runs of a variant interleaved,
after one warm-up round (tools/measure.py); both with --threads threads. The paper's setting is
S = 97 (a 769x769 crop at output stride 8).

Usage:
  python tools/benchmark_export.py [--feature-size 97] [--image-size 769] [--threads 2]
                                   [--repeats 5] [--variants rcca_block,nl_block,ccnet_r2]
                                   [--json FILE]
"""
import argparse
import os
import tempfile
import warnings

import numpy as np
import onnxruntime
import torch

from ccnet.engine.cli import build_config
from ccnet.export import export_verified, sample_inputs
from ccnet.layers import ContextModule
from detectron2.modeling import build_model

from measure import add_json_argument, add_repeats_argument, add_threads_argument, interleaved_medians, write_json

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CCNET_CONFIG = os.path.join(REPO_ROOT, "configs/Cityscapes-SemanticSegmentation/rcca_r2_R_101_OS8_60k.yaml")
VARIANTS = ("rcca_block", "nl_block", "ccnet_r2")


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--feature-size", type=int, default=97, help="S of the (1, 2048, S, S) block input")
    parser.add_argument("--image-size", type=int, default=769, help="image side for ccnet_r2")
    add_threads_argument(parser, default=2)
    add_repeats_argument(parser, default=5)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--config-overrides", nargs="*", default=[], help="extra KEY VALUE for the ccnet_r2 config")
    add_json_argument(parser)
    return parser


def _opened(module: torch.nn.Module) -> torch.nn.Module:
    """Eval mode, with gamma 0.5 (a fresh block is the identity, which would skip no work but
    hides a wrong attention in the output check)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("gamma"):
                p.fill_(0.5)
    return module.eval()


def _onnx_session(path: str, threads: int):
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _block_runners(kind: str, size: int, threads: int, folder: str):
    module = _opened(ContextModule(2048, 512, attention=kind, recurrence=2, norm="BN"))
    x = torch.randn(1, 2048, size, size)
    path = os.path.join(folder, f"{kind}.onnx")
    torch.onnx.export(module, (x,), path, dynamo=False, opset_version=17, input_names=["x"])
    session = _onnx_session(path, threads)
    with torch.no_grad():
        error = float(np.abs(session.run(None, {"x": x.numpy()})[0] - module(x).numpy()).max())
    return (lambda: module(x)), (lambda: session.run(None, {"x": x.numpy()})), error


def _model_runners(args, folder: str):
    overrides = ["MODEL.WEIGHTS", "", "TEST.SLIDING_WINDOW.ENABLED", "False"] + list(args.config_overrides)
    cfg = build_config(CCNET_CONFIG, overrides)
    model = _opened(build_model(cfg))
    inputs = sample_inputs(cfg, size=(args.image_size, args.image_size))
    report = export_verified(model, inputs, folder, "onnx", "tracing")
    session = _onnx_session(report.path, args.threads)
    image = inputs[0]["image"]
    error = max(c.max_diff["sem_seg"] for c in report.checks.values())
    return (lambda: model(inputs)), (lambda: session.run(None, {"image": image.numpy()})), error


def main(argv=None) -> list:
    args = argument_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    rows = []
    with tempfile.TemporaryDirectory() as folder, torch.no_grad():
        for name in args.variants.split(","):
            if name == "ccnet_r2":
                eager, onnx_run, error = _model_runners(args, folder)
                setting = f"image {args.image_size}x{args.image_size}"
            elif name in ("rcca_block", "nl_block"):
                eager, onnx_run, error = _block_runners({"rcca_block": "RCCA", "nl_block": "NL"}[name], args.feature_size, args.threads, folder)
                setting = f"feature 2048x{args.feature_size}x{args.feature_size}"
            else:
                raise SystemExit(f"unknown variant {name!r}; expected some of {VARIANTS}")
            medians = interleaved_medians({"eager": eager, "onnxruntime": onnx_run}, args.repeats)
            rows.append(
                {
                    "variant": name,
                    "setting": setting,
                    "eager_ms": 1000 * medians["eager"],
                    "onnxruntime_ms": 1000 * medians["onnxruntime"],
                    "onnxruntime_over_eager": medians["onnxruntime"] / medians["eager"],
                    "max_abs_diff": error,
                    "threads": args.threads,
                }
            )
    print(f"| variant | setting | eager (ms) | onnxruntime (ms) | onnxruntime / eager | max abs diff |  ({args.threads} threads)")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['variant']} | {r['setting']} | {r['eager_ms']:.1f} | {r['onnxruntime_ms']:.1f} | "
            f"{r['onnxruntime_over_eager']:.2f} | {r['max_abs_diff']:.2g} |"
        )
    if args.json:
        write_json(args.json, rows)
    return rows


if __name__ == "__main__":
    main()
