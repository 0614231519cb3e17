"""How well a trained semantic model's context features separate the classes, on a dataset.

What the category consistent loss is meant to improve: per image, over the labelled pixels,
the mean distance of a pixel's feature to the centre of its class ("intra") and the mean
distance between the centres of the classes present ("centres"); their ratio intra / centres
(lower = more discriminative), averaged over the images with at least two classes. The
features are the output of the head's context module (``sem_seg_head.context``: what the
classifier and, with CCL, the CCL embedding read), (N, C, h, w) at the head's stride; the
labels are resized to h x w by nearest neighbour. The same space is measured for models with
and without CCL, so the numbers compare.

Whole-image inference, after the config's test-time resize (``INPUT.MIN_SIZE_TEST``), on every image of the dataset (``--dataset``, default the config's
first ``DATASETS.TEST``), in eval mode. Prints the means; ``--json FILE`` writes them and the
per-image values. Example::

    python tools/feature_discriminability.py --config-file configs/Synthetic-LongRange/rcca_r2_ccl.yaml \\
        --json out.json MODEL.WEIGHTS output/context_benchmark/rcca_r2_ccl/seed_0/model_final.pth
"""
import argparse
import sys

import cv2
import numpy as np
import torch
from ccnet.engine import AtomicCheckpointer
from ccnet.engine.cli import build_config
from detectron2.data import DatasetCatalog
from detectron2.data import transforms as T
from detectron2.data.detection_utils import read_image
from detectron2.modeling import build_model
from torch.nn import functional as F

from ccl_diagnostics import centre_distances
from measure import add_json_argument, write_json


def argument_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--dataset", default=None, help="dataset name (default: the config's first DATASETS.TEST)")
    add_json_argument(parser)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, e.g. MODEL.WEIGHTS model.pth")
    return parser


def image_discriminability(features: torch.Tensor, label: np.ndarray, ignore_value: int) -> dict:
    """One image: features (C, h, w), label (H, W) class ids -> {"intra", "centres", "ratio"}
    (ratio and centres are NaN with fewer than two classes present)."""
    labels = torch.from_numpy(label.astype(np.int64))[None, None].float()
    labels = F.interpolate(labels, size=features.shape[-2:], mode="nearest")[:, 0].long()
    distances = centre_distances(features[None], labels, ignore_value)
    intra, centres = distances["intra_class_distance"], distances["centre_distance"]
    return {"intra": intra, "centres": centres, "ratio": intra / centres}


@torch.no_grad()
def discriminability(model, dataset_name: str, ignore_value: int, input_format: str, resize: T.Augmentation) -> dict:
    """Means over the images of ``dataset_name`` (see the module docstring), and per image.
    Each image is resized by ``resize`` first (the test-time resize of the config)."""
    captured = {}
    handle = model.sem_seg_head.context.register_forward_hook(lambda m, i, o: captured.__setitem__("context", o))
    per_image = []
    try:
        for d in DatasetCatalog.get(dataset_name):
            image = read_image(d["file_name"], format=input_format)
            resized = resize.get_transform(image).apply_image(image)
            tensor = torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1)))
            model([{"image": tensor, "height": image.shape[0], "width": image.shape[1]}])
            label = cv2.imread(d["sem_seg_file_name"], cv2.IMREAD_UNCHANGED)
            per_image.append({"file_name": d["file_name"], **image_discriminability(captured["context"][0], label, ignore_value)})
    finally:
        handle.remove()
    valid = [p for p in per_image if np.isfinite(p["ratio"])]
    if not valid:
        raise ValueError(f"{dataset_name}: no image has two labelled classes")
    means = {key: float(np.mean([p[key] for p in valid])) for key in ("intra", "centres", "ratio")}
    return {"dataset": dataset_name, "images": len(valid), **means, "per_image": per_image}


def main(argv=None) -> dict:
    args = argument_parser().parse_args(argv)
    cfg = build_config(args.config_file, args.opts)
    if cfg.TEST.SLIDING_WINDOW.ENABLED or cfg.TEST.AUG.ENABLED:
        raise ValueError("whole-image inference only: set TEST.SLIDING_WINDOW.ENABLED False TEST.AUG.ENABLED False")
    model = build_model(cfg).eval()
    AtomicCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    dataset_name = args.dataset or cfg.DATASETS.TEST[0]
    resize = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)
    result = discriminability(model, dataset_name, cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE, cfg.INPUT.FORMAT, resize)
    print(
        f"{dataset_name}: {result['images']} images; intra-class distance {result['intra']:.4f}, "
        f"distance between class centres {result['centres']:.4f}, ratio {result['ratio']:.4f}"
    )
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
