#!/usr/bin/env python
"""Shift the ADE20K labels into what Detectron2's ``ade20k_sem_seg_*`` read.

Input: the official ``ADEChallengeData2016.zip`` (SceneParsing benchmark), unzipped or not, in
``--root`` (default ``$DETECTRON2_DATASETS``), see ``datasets/README.md``, section ADE20K::

    ADEChallengeData2016/images/{training,validation}/ADE_*.jpg
    ADEChallengeData2016/annotations/{training,validation}/ADE_*.png    0 = other, 1..150 = classes

Writes ``ADEChallengeData2016/annotations_detectron2/{training,validation}/ADE_*.png``: the 150
classes as 0..149 and "other" (0) as 255, the ignore value (Detectron2's own
``prepare_ade20k_sem_seg.py`` does the same shift).

Usage::

    python datasets/prepare_ade20k.py [--root datasets]
"""
import argparse
import glob
import os
import sys
import zipfile
from typing import List, Optional

import numpy as np
from PIL import Image
from tqdm import tqdm

from ccnet.utils.files import datasets_root

SPLITS = ("training", "validation")


def shift_labels(label: np.ndarray) -> np.ndarray:
    """ADE20K class c (1..150) -> c - 1; 0 ("other") -> 255."""
    return (label.astype(np.int32) - 1).astype(np.uint8)


def convert(annotation_file: str, out_file: str) -> None:
    label = np.asarray(Image.open(annotation_file))
    if label.ndim != 2:
        raise ValueError(f"{annotation_file}: expected a single-channel label map, got shape {label.shape}")
    Image.fromarray(shift_labels(label)).save(out_file)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--root",
        default=datasets_root(),
        help="folder holding ADEChallengeData2016/ or ADEChallengeData2016.zip (default $DETECTRON2_DATASETS)",
    )
    args = parser.parse_args(argv)
    dataset = os.path.join(args.root, "ADEChallengeData2016")
    archive = dataset + ".zip"
    if not os.path.isdir(dataset) and os.path.isfile(archive):
        print(f"extracting {archive}")
        with zipfile.ZipFile(archive) as z:
            z.extractall(args.root)
    for split in SPLITS:
        annotations = sorted(glob.glob(os.path.join(dataset, "annotations", split, "*.png")))
        if not annotations:
            sys.exit(
                f"no annotations in '{os.path.join(dataset, 'annotations', split)}': download ADEChallengeData2016.zip "
                "from http://sceneparsing.csail.mit.edu and put it (or its extracted folder) in --root"
            )
        out_dir = os.path.join(dataset, "annotations_detectron2", split)
        os.makedirs(out_dir, exist_ok=True)
        for f in tqdm(annotations, desc=split):
            convert(f, os.path.join(out_dir, os.path.basename(f)))
        print(f"wrote {len(annotations)} label maps to {out_dir}")


if __name__ == "__main__":
    main()
