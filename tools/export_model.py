#!/usr/bin/env python
"""
Export a CCNet model (RCCA / NL Mask R-CNN, CCNet semantic, video) to TorchScript or ONNX, in
the manner of Detectron2's ``tools/deploy/export_model.py``, and prove the file computes the
model: it is reloaded (``torch.jit.load`` / onnxruntime on CPU), run on the sample, on the
sample mirrored and on an odd-sized crop (height and width are dynamic), and compared with eager.
The file is only written when every output is within tolerance; otherwise the tool prints the
differences and exits with status 1.

Examples::

    python tools/export_model.py --config-file configs/Quickstart/mask_rcnn_rcca_shapes.yaml \\
        --format onnx --output output/export MODEL.WEIGHTS output/demo/model_final.pth
    python tools/export_model.py --config-file configs/Cityscapes-SemanticSegmentation/rcca_r2_R_101_OS8_60k.yaml \\
        --format onnx --sample-image frankfurt.png --output out \\
        TEST.SLIDING_WINDOW.ENABLED False MODEL.WEIGHTS model_final.pth

Outputs of the exported file:
  instance (tracing): the flattened Instances of ``model.inference(..., do_postprocess=False)``
      (boxes in the resized image, 28x28 ROI masks), as Detectron2's;
  instance (scripting): ``[{"pred_boxes", "scores", "pred_classes", "pred_masks"}]``, any size;
  semantic: ``(K, H, W)`` logits of an image ``(3, H, W)``, any H, W;
  video: ``(K, H, W)`` logits of the middle frame of a clip ``(T, 3, H, W)``, any H, W.
"""
import argparse
import warnings
import logging
import sys

import torch

from ccnet.engine import AtomicCheckpointer
from ccnet.engine.cli import build_config
from ccnet.export import FORMATS, METHODS, ExportMismatchError, export_verified, sample_inputs
from ccnet.layers import UnfaithfulExportError
from detectron2.modeling import build_model
from detectron2.utils.logger import setup_logger


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, metavar="FILE", help="path to config file")
    parser.add_argument("--format", choices=FORMATS, default="torchscript", help="output format")
    parser.add_argument("--export-method", choices=METHODS, default="tracing", help="scripting: Mask R-CNN to TorchScript only")
    parser.add_argument(
        "--sample-image", nargs="+", default=(), metavar="FILE",
        help="image(s) to trace with and check on (a video model: T frames, or one repeated); default: a generated image",
    )  # fmt: skip
    parser.add_argument("--sample-size", nargs=2, type=int, metavar=("H", "W"), help="size of the generated image")
    parser.add_argument("--output", required=True, help="output directory for model.ts / model.onnx")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    return parser


def main(argv=None) -> int:
    args = argument_parser().parse_args(argv)
    setup_logger(name="ccnet")
    # Detectron2's tracing warns about every shape it reads; the checks below are what count.
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    logger = logging.getLogger("ccnet.export")
    cfg = build_config(args.config_file, args.opts)
    cfg.freeze()
    model = build_model(cfg)
    if not cfg.MODEL.WEIGHTS:
        logger.warning("MODEL.WEIGHTS is empty: exporting a randomly initialised model")
    AtomicCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    model.eval()
    inputs = sample_inputs(cfg, args.sample_image, args.sample_size)
    try:
        report = export_verified(model, inputs, args.output, args.format, args.export_method)
    except ExportMismatchError as error:
        print(f"EXPORT FAILED: {error}", file=sys.stderr)
        return 1
    except UnfaithfulExportError as error:
        print(f"CANNOT EXPORT: {error}", file=sys.stderr)
        return 1
    print(report.table())
    logger.info(f"wrote {report.path} ({report.family} model, {report.format}, {report.method}); outputs match eager")
    return 0


if __name__ == "__main__":
    with torch.no_grad():
        sys.exit(main())
