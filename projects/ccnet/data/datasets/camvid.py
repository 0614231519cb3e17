"""CamVid: 11 classes plus void, the standard 367/101/233 split (Sturgess et al., as in SegNet).

``datasets/prepare_camvid.py`` writes, under ``$DETECTRON2_DATASETS/camvid/``, the layout of
:mod:`ccnet.data.datasets.video` (see ``datasets/README.md``, section CamVid)::

    images/{train,val,test}/<seq>_<frame>.png    the 701 annotated frames
    labels/{train,val,test}/<seq>_<frame>.png    class ids 0..10 in CLASSES order, 255 = void
    sequences/<seq>/<seq>_<frame>.png            video frames around them (only for camvid_video_*)

Registered here:

* ``camvid_sem_seg_{train,val,test}``: single annotated frames (Detectron2's ``load_sem_seg``);
* ``camvid_video_{train,val,test}``: the same frames and labels, each with the sequence its
  clip comes from (:func:`ccnet.data.datasets.video.load_video_sem_seg`).

Both are evaluated with ``SemSegEvaluator`` on the annotated frames.
"""
import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_sem_seg

from ...utils.files import datasets_root
from .video import load_video_sem_seg

__all__ = ["CLASSES", "COLORS", "SPLITS", "IGNORE_LABEL", "register_camvid"]

CLASSES = (
    "Sky", "Building", "Pole", "Road", "Sidewalk", "Tree",
    "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
)  # fmt: skip
"""The 11 evaluated classes; a label map stores a class as its index here."""

COLORS = (
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (0, 0, 192), (128, 128, 0),
    (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
)  # fmt: skip
"""RGB colour of each class in CamVid's own colour code (LabeledApproved_full)."""

IGNORE_LABEL = 255
"""Label value of void pixels."""

SPLITS = {"train": 367, "val": 101, "test": 233}
"""Split name -> number of annotated frames in the standard split."""


def register_camvid(root: str, prefix: str = "camvid") -> None:
    """Register ``<prefix>_sem_seg_<split>`` and ``<prefix>_video_<split>`` for data in ``root``."""
    for split in SPLITS:
        image_dir = os.path.join(root, "images", split)
        label_dir = os.path.join(root, "labels", split)
        sequence_root = os.path.join(root, "sequences")
        metadata = dict(
            stuff_classes=list(CLASSES),
            stuff_colors=[list(c) for c in COLORS],
            ignore_label=IGNORE_LABEL,
            evaluator_type="sem_seg",
            image_root=image_dir,
            sem_seg_root=label_dir,
        )
        name = f"{prefix}_sem_seg_{split}"
        DatasetCatalog.register(name, lambda i=image_dir, l=label_dir: load_sem_seg(l, i, "png", "png"))
        MetadataCatalog.get(name).set(**metadata)

        name = f"{prefix}_video_{split}"
        DatasetCatalog.register(
            name, lambda i=image_dir, l=label_dir, s=sequence_root: load_video_sem_seg(i, l, s)
        )
        MetadataCatalog.get(name).set(sequence_root=sequence_root, **metadata)


register_camvid(os.path.join(datasets_root(), "camvid"))
