#!/usr/bin/env python
"""Draw the attention of one pixel after 1 and 2 criss-cross passes, as in the CCNet paper.

The model (config + trained weights) runs on the image; the input of each pass of its RCCA
attention is captured, each pass's dense attention matrix is computed from that input's query
and key projections, and the passes are composed by matrix product
(:mod:`ccnet.visualization`). The PNG shows the image, the map of the first pass (R=1:
the pixel's row and column), the two passes composed (R=2: the whole image), and the
prediction. Example::

    python tools/visualize_attention.py \\
        --config-file configs/Synthetic-LongRange/rcca_r2.yaml \\
        --input datasets/long_range/images/val/000000.png --pixel 20 30 \\
        --output output/attention.png \\
        MODEL.WEIGHTS output/context_benchmark/rcca_r2/seed_0/model_final.pth
"""
import argparse
import os
import sys

import numpy as np
import torch
from ccnet.engine import AtomicCheckpointer
from ccnet.engine.cli import build_config
from ccnet.visualization import attention_maps, draw_attention_figure
from detectron2.data import MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.modeling import build_model


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, help="the model's config")
    parser.add_argument("--input", required=True, help="an image file")
    parser.add_argument("--pixel", type=int, nargs=2, required=True, metavar=("X", "Y"), help="the query pixel")
    parser.add_argument("--output", required=True, help="the PNG to write")
    parser.add_argument("--module", help="name of the CrissCrossAttention module (default: the last one)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, e.g. MODEL.WEIGHTS model_final.pth")
    return parser


def main(argv=None) -> None:
    args = argument_parser().parse_args(argv)
    cfg = build_config(args.config_file, args.opts)
    if not cfg.MODEL.WEIGHTS:
        raise ValueError("no trained weights: pass MODEL.WEIGHTS /path/to/model_final.pth")
    if not os.path.isfile(args.input):
        raise FileNotFoundError(f"--input {args.input} does not exist")
    model = build_model(cfg)
    AtomicCheckpointer(model).load(cfg.MODEL.WEIGHTS)

    image = utils.read_image(args.input, format=cfg.INPUT.FORMAT)
    height, width = image.shape[:2]
    resize = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)
    resized = resize.get_transform(image).apply_image(image)
    inputs = {"image": torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1))), "height": height, "width": width}
    result = attention_maps(model, inputs, tuple(args.pixel), args.module)

    rgb = utils.convert_image_to_rgb(image, cfg.INPUT.FORMAT)
    colors = MetadataCatalog.get(cfg.DATASETS.TEST[0]).get("stuff_colors", None) if cfg.DATASETS.TEST else None
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    draw_attention_figure(rgb, tuple(args.pixel), result["maps"], args.output, result["prediction"], colors)
    print(f"wrote {args.output} (feature cell {result['cell']}, {len(result['maps'])} passes)")


if __name__ == "__main__":
    main(sys.argv[1:])
