"""LIP (Look Into Person) human parsing: 20 classes (background and 19 parts or clothes).

``datasets/prepare_lip.py`` puts the official download under ``$DETECTRON2_DATASETS/LIP/`` in
the layout below (see ``datasets/README.md``, section LIP)::

    TrainVal_images/{train,val}_images/<id>.jpg
    TrainVal_parsing_annotations/{train,val}_segmentations/<id>.png   class ids 0..19

Registered here: ``lip_sem_seg_{train,val}`` (Detectron2's ``load_sem_seg``), evaluated with
``SemSegEvaluator``. The metadata's ``flip_class_map`` tells mirroring (training augmentation,
flip test-time augmentation) to swap left and right arms, legs and shoes.
"""
import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_sem_seg

from ...utils.files import datasets_root

__all__ = ["CLASSES", "MIRRORED_CLASS_PAIRS", "FLIP_CLASS_MAP", "SPLITS", "IGNORE_LABEL", "register_lip"]

CLASSES = (
    "Background", "Hat", "Hair", "Glove", "Sunglasses", "Upper-clothes", "Dress", "Coat", "Socks",
    "Pants", "Jumpsuits", "Scarf", "Skirt", "Face", "Left-arm", "Right-arm", "Left-leg", "Right-leg",
    "Left-shoe", "Right-shoe",
)  # fmt: skip
"""The 20 classes; a label map stores a class as its index here."""

MIRRORED_CLASS_PAIRS = ((14, 15), (16, 17), (18, 19))
"""Classes that swap in a mirrored image: left/right arm, leg, shoe."""


def _flip_class_map(num_classes, pairs):
    mapping = list(range(num_classes))
    for left, right in pairs:
        mapping[left], mapping[right] = right, left
    return mapping


FLIP_CLASS_MAP = _flip_class_map(len(CLASSES), MIRRORED_CLASS_PAIRS)
"""Class id -> its id in the horizontally mirrored image."""

IGNORE_LABEL = 255
"""LIP labels every pixel; 255 is accepted as 'unlabelled' like in the other datasets."""

SPLITS = {
    "train": ("TrainVal_images/train_images", "TrainVal_parsing_annotations/train_segmentations"),
    "val": ("TrainVal_images/val_images", "TrainVal_parsing_annotations/val_segmentations"),
}
"""Split -> (image folder, label folder), relative to the LIP root."""


def register_lip(root: str, prefix: str = "lip") -> None:
    """Register ``<prefix>_sem_seg_{train,val}`` for the LIP layout under ``root``."""
    for split, (image_dir, label_dir) in SPLITS.items():
        image_dir, label_dir = os.path.join(root, image_dir), os.path.join(root, label_dir)
        name = f"{prefix}_sem_seg_{split}"
        DatasetCatalog.register(name, lambda i=image_dir, l=label_dir: load_sem_seg(l, i, "png", "jpg"))
        MetadataCatalog.get(name).set(
            stuff_classes=list(CLASSES),
            ignore_label=IGNORE_LABEL,
            flip_class_map=list(FLIP_CLASS_MAP),
            evaluator_type="sem_seg",
            image_root=image_dir,
            sem_seg_root=label_dir,
        )


register_lip(os.path.join(datasets_root(), "LIP"))
