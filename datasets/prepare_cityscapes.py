#!/usr/bin/env python
"""Write the ``*_gtFine_labelTrainIds.png`` maps that ``cityscapes_fine_sem_seg_*`` read.

Input: the official Cityscapes downloads ``gtFine_trainvaltest.zip`` and
``leftImg8bit_trainvaltest.zip`` unzipped into ``--root`` (default
``$DETECTRON2_DATASETS/cityscapes``), see ``datasets/README.md``, section Cityscapes::

    leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_{labelIds.png,instanceIds.png,polygons.json,...}

For every ``*_gtFine_labelIds.png`` it writes ``*_gtFine_labelTrainIds.png`` beside it: the
19 evaluated classes as train IDs 0..18 and 255 for every other class, using the label table
of ``cityscapesscripts`` (``cityscapesscripts.helpers.labels``). Same result as the official
``createTrainIdLabelImgs`` (which draws the same maps from the polygons), faster.

Usage::

    python datasets/prepare_cityscapes.py [--root datasets/cityscapes] [--workers 8]
"""
import argparse
import glob
import multiprocessing
import os
import sys
from typing import List, Optional

import numpy as np
from cityscapesscripts.helpers.labels import id2label
from PIL import Image
from tqdm import tqdm

from ccnet.utils.files import datasets_root

LABEL_IDS_SUFFIX = "_gtFine_labelIds.png"
TRAIN_IDS_SUFFIX = "_gtFine_labelTrainIds.png"
IGNORE_TRAIN_ID = 255


def train_id_lookup() -> np.ndarray:
    """(256,) uint8 table: Cityscapes label ID -> train ID (255 for classes not evaluated)."""
    lookup = np.full(256, IGNORE_TRAIN_ID, dtype=np.uint8)
    for label_id, label in id2label.items():
        if 0 <= label_id < 256 and 0 <= label.trainId < IGNORE_TRAIN_ID:
            lookup[label_id] = label.trainId
    return lookup


def convert(label_ids_file: str, lookup: Optional[np.ndarray] = None) -> str:
    """Write the train-ID map of one ``*_gtFine_labelIds.png``; return its path."""
    lookup = train_id_lookup() if lookup is None else lookup
    label_ids = np.asarray(Image.open(label_ids_file))
    if label_ids.ndim != 2:
        raise ValueError(f"{label_ids_file}: expected a single-channel map of label IDs, got shape {label_ids.shape}")
    out = label_ids_file[: -len(LABEL_IDS_SUFFIX)] + TRAIN_IDS_SUFFIX
    Image.fromarray(lookup[label_ids]).save(out)
    return out


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--root",
        default=os.path.join(datasets_root(), "cityscapes"),
        help="the Cityscapes folder holding gtFine/ and leftImg8bit/ (default $DETECTRON2_DATASETS/cityscapes)",
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="parallel processes")
    args = parser.parse_args(argv)

    files = sorted(glob.glob(os.path.join(args.root, "gtFine", "*", "*", "*" + LABEL_IDS_SUFFIX)))
    if not files:
        sys.exit(
            f"no gtFine/<split>/<city>/*{LABEL_IDS_SUFFIX} under '{args.root}': download gtFine_trainvaltest.zip "
            "and leftImg8bit_trainvaltest.zip from https://www.cityscapes-dataset.com and unzip them there"
        )
    if args.workers <= 1:
        for f in tqdm(files, desc="labelTrainIds"):
            convert(f)
    else:
        with multiprocessing.Pool(args.workers) as pool:
            for _ in tqdm(pool.imap_unordered(convert, files, chunksize=16), total=len(files), desc="labelTrainIds"):
                pass
    print(f"wrote {len(files)} *{TRAIN_IDS_SUFFIX} files under {os.path.join(args.root, 'gtFine')}")


if __name__ == "__main__":
    main()
