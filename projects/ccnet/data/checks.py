"""Fail early, naming the folder or file, when a registered dataset is not on disk or is malformed.

:func:`verify_dataset_files` checks the paths in a dataset's metadata and then runs the content
checks registered for it (:func:`register_content_check`): user datasets
(``ccnet.data.datasets.custom``) check their COCO JSON (:func:`check_coco_json`) or their image
and label folders (:func:`check_sem_seg_folders`) there, before training starts.
"""
import json
import os
from typing import Callable, Dict, List, Sequence

import numpy as np
import tqdm
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import detection_utils as utils

from ..utils.files import datasets_root
from .sem_seg_mapper import check_sem_seg

__all__ = [
    "verify_dataset_files",
    "register_content_check",
    "check_coco_json",
    "check_sem_seg_folders",
    "verify_num_classes",
]

# Metadata keys that hold paths, in Detectron2's built-in registrations and ours.
_PATH_KEYS = ("image_root", "image_dir", "json_file", "sem_seg_root", "gt_dir", "panoptic_root", "panoptic_json")

# How to get each dataset family, for datasets registered by Detectron2 itself.
_PREPARE_HINTS = {
    "coco_": "download COCO as described in datasets/README.md (COCO)",
    "cityscapes_": "download Cityscapes and run `python datasets/prepare_cityscapes.py` (datasets/README.md)",
    "ade20k_": "download ADEChallengeData2016 and run `python datasets/prepare_ade20k.py` (datasets/README.md)",
    "lip_": "download LIP and run `python datasets/prepare_lip.py` (datasets/README.md)",
    "camvid_": "download CamVid and run `python datasets/prepare_camvid.py` (datasets/README.md)",
}


def _prepare_hint(dataset_name: str, metadata) -> str:
    hint = metadata.get("prepare_hint", None)
    if hint is None:
        hint = next((h for prefix, h in _PREPARE_HINTS.items() if dataset_name.startswith(prefix)), None)
    return hint or "see datasets/README.md"


# dataset name -> check of its content, run by verify_dataset_files after the path checks.
_CONTENT_CHECKS: Dict[str, Callable[[], None]] = {}


def register_content_check(dataset_name: str, check: Callable[[], None]) -> None:
    """Make :func:`verify_dataset_files` run ``check()`` (which raises on bad content) for a dataset."""
    _CONTENT_CHECKS[dataset_name] = check


def verify_dataset_files(dataset_name: str) -> None:
    """Check that the folders and files a dataset's metadata names exist, then run the content
    check registered for it (:func:`register_content_check`), if any.

    Datasets whose metadata sets ``generated_on_first_use=True`` (the synthetic ones) are
    created by their loader and skipped here.

    Raises:
        KeyError: the dataset is not registered.
        FileNotFoundError: a folder or file is missing; the message names it, the variable
            ``DETECTRON2_DATASETS`` and the preparation step.
        ValueError: from the content check, naming the file and the problem.
    """
    if dataset_name not in DatasetCatalog.list():
        raise KeyError(
            f"Dataset '{dataset_name}' is not registered. Registered datasets: {', '.join(sorted(DatasetCatalog.list()))}"
        )
    metadata = MetadataCatalog.get(dataset_name)
    if metadata.get("generated_on_first_use", False):
        return
    for key in _PATH_KEYS:
        path = metadata.get(key, None)
        if path and not os.path.exists(path):
            root = datasets_root()
            raise FileNotFoundError(
                f"Dataset '{dataset_name}': {key} '{path}' does not exist "
                f"(DETECTRON2_DATASETS={root!r}). To get it: {_prepare_hint(dataset_name, metadata)}."
            )
    if dataset_name in _CONTENT_CHECKS:
        _CONTENT_CHECKS[dataset_name]()


def _first(items: Sequence, count: int = 5) -> str:
    shown = ", ".join(str(item) for item in list(items)[:count])
    return shown + (f" ... ({len(items)} in all)" if len(items) > count else "")


def check_coco_json(json_file: str, image_root: str) -> List[str]:
    """Check a COCO-format instance file before Detectron2's ``load_coco_json`` reads it.

    Checks: the JSON parses and has ``images``, ``annotations`` and ``categories``; category ids
    are unique integers; every annotation names a listed image and a listed category; every
    listed image file exists under ``image_root``.

    Returns:
        The category names in Detectron2's order (sorted by category id: contiguous id i is
        the i-th of them).
    Raises:
        FileNotFoundError: ``json_file`` or ``image_root`` is missing, or listed images are
            missing (the message names them).
        ValueError: the file is not valid JSON, lacks a section, or has invalid category ids;
            the message names ``json_file`` and the offending ids.
    """
    if not os.path.isfile(json_file):
        raise FileNotFoundError(f"COCO annotation file {json_file} does not exist")
    if not os.path.isdir(image_root):
        raise FileNotFoundError(f"image folder {image_root} (of {json_file}) does not exist")
    try:
        with open(json_file) as f:
            coco = json.load(f)
    except json.JSONDecodeError as error:
        raise ValueError(f"COCO annotation file {json_file} is not valid JSON: {error}") from None
    missing = [key for key in ("images", "annotations", "categories") if not isinstance(coco.get(key), list)]
    if missing:
        raise ValueError(f"COCO annotation file {json_file} has no list {missing} (a COCO instances file has images, annotations, categories)")
    category_ids = [category.get("id") for category in coco["categories"]]
    bad = [i for i in category_ids if not isinstance(i, int) or isinstance(i, bool)]
    if bad or not category_ids:
        raise ValueError(f"COCO annotation file {json_file}: category ids must be integers, got {category_ids[:10]}")
    duplicates = sorted({i for i in category_ids if category_ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"COCO annotation file {json_file}: category ids {duplicates} appear more than once in 'categories'")
    known = set(category_ids)
    unknown = sorted({a.get("category_id") for a in coco["annotations"] if a.get("category_id") not in known}, key=str)
    if unknown:
        raise ValueError(
            f"COCO annotation file {json_file}: annotations use category ids {unknown[:10]} that are not "
            f"in 'categories' (ids {sorted(known)})"
        )
    image_ids = {image.get("id") for image in coco["images"]}
    orphans = sorted({a.get("image_id") for a in coco["annotations"] if a.get("image_id") not in image_ids}, key=str)
    if orphans:
        raise ValueError(f"COCO annotation file {json_file}: annotations refer to image ids {_first(orphans)} not in 'images'")
    absent = [
        os.path.join(image_root, image.get("file_name", ""))
        for image in coco["images"]
        if not os.path.isfile(os.path.join(image_root, image.get("file_name", "")))
    ]
    if absent:
        raise FileNotFoundError(f"COCO annotation file {json_file} lists images that do not exist: {_first(absent)}")
    unnamed = [c["id"] for c in coco["categories"] if not isinstance(c.get("name"), str)]
    if unnamed:
        raise ValueError(f"COCO annotation file {json_file}: categories {unnamed[:10]} have no 'name'")
    names = {category["id"]: category["name"] for category in coco["categories"]}
    return [names[i] for i in sorted(names)]


def check_sem_seg_folders(
    image_root: str, label_root: str, num_classes: int, ignore_label: int, image_ext: str, label_ext: str = ".png"
) -> int:
    """Check a semantic dataset (images ``image_root/NAME<image_ext>``, label maps
    ``label_root/NAME<label_ext>``) file by file, with a progress bar.

    Every label must have an image of the same name and vice versa, and each label map must pass
    :func:`ccnet.data.sem_seg_mapper.check_sem_seg` (one channel, the image's size, values in
    [0, num_classes) or ``ignore_label``), the check training applies to each sample.

    Returns:
        The number of (image, label) pairs.
    Raises:
        FileNotFoundError: a folder is missing or empty, or a file has no counterpart (named).
        ValueError: a label map is invalid; the message names the file.
    """
    for folder in (image_root, label_root):
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"semantic dataset folder {folder} does not exist")

    def stems(folder, ext):
        return {os.path.splitext(f)[0]: os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(ext)}

    images, labels = stems(image_root, image_ext), stems(label_root, label_ext)
    if not labels:
        raise FileNotFoundError(f"no label maps (*{label_ext}) in {label_root}")
    no_image = sorted(labels[s] for s in labels.keys() - images.keys())
    if no_image:
        raise FileNotFoundError(f"label maps without an image (*{image_ext}) in {image_root}: {_first(no_image)}")
    no_label = sorted(images[s] for s in images.keys() - labels.keys())
    if no_label:
        raise FileNotFoundError(f"images without a label map (*{label_ext}) in {label_root}: {_first(no_label)}")
    for stem in tqdm.tqdm(sorted(labels), desc=f"checking {label_root}", unit="label", mininterval=2):
        with Image.open(images[stem]) as image:
            width, height = image.size
        label = np.asarray(utils.read_image(labels[stem]))
        check_sem_seg(label, labels[stem], (height, width), num_classes, ignore_label)
    return len(labels)


def verify_num_classes(dataset_name: str, num_classes: int, key: str) -> None:
    """Check a model's class count against a dataset whose metadata asks for it
    (``check_num_classes``, set for user datasets): ``thing_classes`` or ``stuff_classes``.

    Raises:
        ValueError: naming the dataset, its classes, and the config key ``key`` to change.
    """
    metadata = MetadataCatalog.get(dataset_name)
    if not metadata.get("check_num_classes", False):
        return
    classes = metadata.get("thing_classes", None) or metadata.get("stuff_classes", None)
    if classes is not None and len(classes) != num_classes:
        raise ValueError(
            f"Dataset '{dataset_name}' has {len(classes)} classes {list(classes)[:20]}, but {key} is {num_classes}: "
            f"set {key} {len(classes)}"
        )
