#!/usr/bin/env python
"""Put the official LIP download into the layout ``lip_sem_seg_*`` read, and check every label map.

Input, in ``--root`` (default ``$DETECTRON2_DATASETS/LIP``): the official single-person parsing
archives of LIP (Look Into Person, http://sysu-hcp.net/lip), ``TrainVal_images.zip`` and
``TrainVal_parsing_annotations.zip``, or their extracted folders (also when extraction added
an extra level, e.g. ``TrainVal_parsing_annotations/TrainVal_parsing_annotations/...``).

Result (see ``datasets/README.md``, section LIP)::

    TrainVal_images/{train,val}_images/<id>.jpg
    TrainVal_parsing_annotations/{train,val}_segmentations/<id>.png    class ids 0..19

The label maps are used as they are (LIP already stores class ids 0..19). Each one is checked:
its image exists, it has the image's size, and its values are classes (or 255). Problems are
listed with the file names and the script exits with status 1.

Usage::

    python datasets/prepare_lip.py [--root datasets/LIP]
"""
import argparse
import os
import shutil
import sys
import zipfile
from typing import List, Optional

import numpy as np
from PIL import Image
from tqdm import tqdm

from ccnet.data.datasets.lip import CLASSES, IGNORE_LABEL, SPLITS
from ccnet.data.sem_seg_mapper import check_sem_seg
from ccnet.utils.files import datasets_root

ARCHIVES = ("TrainVal_images.zip", "TrainVal_parsing_annotations.zip")


def extract_archives(root: str) -> None:
    """Extract the official archives found in ``root`` whose folder is not there yet."""
    for archive in ARCHIVES:
        path = os.path.join(root, archive)
        if os.path.isfile(path) and not os.path.isdir(path[: -len(".zip")]):
            print(f"extracting {path}")
            with zipfile.ZipFile(path) as z:
                z.extractall(root)


def _find_folder(root: str, name: str) -> Optional[str]:
    for folder, subfolders, _ in os.walk(root):
        if name in subfolders:
            return os.path.join(folder, name)
    return None


def arrange(root: str) -> None:
    """Move each split's image and label folder to its place in the layout.

    Raises:
        FileNotFoundError: naming the folder that is nowhere under ``root``.
    """
    for relative in (d for pair in SPLITS.values() for d in pair):
        target = os.path.join(root, relative)
        if os.path.isdir(target):
            continue
        found = _find_folder(root, os.path.basename(relative))
        if found is None:
            raise FileNotFoundError(
                f"no '{os.path.basename(relative)}' folder under '{root}': put {' and '.join(ARCHIVES)} "
                "(or their extracted folders) there"
            )
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.move(found, target)


def check_split(root: str, split: str) -> List[str]:
    """Check every label map of ``split``; returns the problems found (each naming a file)."""
    image_dir, label_dir = (os.path.join(root, d) for d in SPLITS[split])
    problems = []
    labels = sorted(f for f in os.listdir(label_dir) if f.endswith(".png"))
    if not labels:
        problems.append(f"{label_dir}: no label maps (*.png)")
    for name in tqdm(labels, desc=f"checking {split}"):
        label_file = os.path.join(label_dir, name)
        image_file = os.path.join(image_dir, name[: -len(".png")] + ".jpg")
        if not os.path.isfile(image_file):
            problems.append(f"label map {label_file} has no image {image_file}")
            continue
        with Image.open(image_file) as image:
            width, height = image.size
        try:
            check_sem_seg(np.asarray(Image.open(label_file)), label_file, (height, width), len(CLASSES), IGNORE_LABEL)
        except ValueError as e:
            problems.append(str(e))
    return problems


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--root",
        default=os.path.join(datasets_root(), "LIP"),
        help="folder holding the LIP archives or their extracted folders (default $DETECTRON2_DATASETS/LIP)",
    )
    args = parser.parse_args(argv)
    extract_archives(args.root)
    arrange(args.root)
    problems = [p for split in SPLITS for p in check_split(args.root, split)]
    if problems:
        print(f"{len(problems)} problem(s) in {args.root}:", *problems[:50], sep="\n  ", file=sys.stderr)
        sys.exit(1)
    print(f"LIP is ready in {args.root}")


if __name__ == "__main__":
    main()
