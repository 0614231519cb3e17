"""A tiny on-disk semantic segmentation dataset and model config for engine tests.

Importing this module registers ``tiny_semseg_train`` / ``tiny_semseg_val`` rooted at
``$TINY_SEMSEG_ROOT``; run as a script it is ``train_net.py`` with those datasets, so
subprocess and multi-process tests exercise the real command line.
"""
import os
import sys

import numpy as np
from PIL import Image

import ccnet.data  # noqa: F401  (first: makes Detectron2 work with today's libraries)
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_sem_seg

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = os.path.join(HERE, "tiny_semseg.yaml")
CLASSES = ["background", "red", "green"]


def write_dataset(root: str, num_images: int = 8, size: int = 64, seed: int = 0) -> None:
    """Write images/<split>/*.png (RGB) and labels/<split>/*.png (class ids) under ``root``."""
    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        os.makedirs(os.path.join(root, "images", split), exist_ok=True)
        os.makedirs(os.path.join(root, "labels", split), exist_ok=True)
        for i in range(num_images):
            image = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            label = np.zeros((size, size), np.uint8)
            for cls, colour in ((1, (200, 30, 30)), (2, (30, 200, 30))):
                y, x = rng.integers(0, size - 16, 2)
                h, w = rng.integers(8, 16, 2)
                image[y : y + h, x : x + w] = colour
                label[y : y + h, x : x + w] = cls
            Image.fromarray(image).save(os.path.join(root, "images", split, f"{i:03d}.png"))
            Image.fromarray(label).save(os.path.join(root, "labels", split, f"{i:03d}.png"))


def register(root: str) -> None:
    for split in ("train", "val"):
        name = f"tiny_semseg_{split}"
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
        image_root = os.path.join(root, "images", split)
        gt_root = os.path.join(root, "labels", split)
        DatasetCatalog.register(
            name, lambda i=image_root, g=gt_root: load_sem_seg(g, i, gt_ext="png", image_ext="png")
        )
        MetadataCatalog.get(name).set(
            stuff_classes=CLASSES,
            ignore_label=255,
            evaluator_type="sem_seg",
            image_root=image_root,
            sem_seg_root=gt_root,
        )


if os.environ.get("TINY_SEMSEG_ROOT"):
    register(os.environ["TINY_SEMSEG_ROOT"])

def train_and_dump_parameters(args):
    """``train_net.main`` for training runs, then every process saves its own parameters."""
    import torch

    from ccnet.engine import Trainer
    from ccnet.engine.cli import setup
    from detectron2.utils import comm

    cfg = setup(args)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    world = comm.get_world_size()
    path = os.path.join(cfg.OUTPUT_DIR, f"parameters_rank{comm.get_rank()}_of_{world}.pth")
    torch.save(dict(trainer.model.named_parameters()), path)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
    import train_net

    from ccnet.engine import launch_from_args

    args = train_net.argument_parser().parse_args()
    main = train_and_dump_parameters if os.environ.get("TINY_SEMSEG_DUMP_PARAMETERS") else train_net.main
    launch_from_args(main, args)
