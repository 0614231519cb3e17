"""Video semantic segmentation on disk: sparsely annotated frames inside full frame sequences.

Both CamVid (after ``datasets/prepare_camvid.py``) and the synthetic temporal set
(:mod:`ccnet.data.datasets.temporal`) use this layout under one root folder::

    images/<split>/<seq>_<frame>.png      the annotated frames
    labels/<split>/<seq>_<frame>.png      their label maps: uint8 class ids, 255 = ignore
    sequences/<seq>/<seq>_<frame>.png     the frames of each video sequence

``<frame>`` is a frame number written with a fixed number of digits, after an optional
letter prefix, exactly as CamVid names its frames (``0001TP_006690``, ``0006R0_f00930``,
``0016E5_00390``, ``Seq05VD_f00000``).  ``sequences/`` may hold only the frames around
the annotated ones; a clip never crosses a gap in the numbering (see :func:`load_video_sem_seg`).
"""
import os
import re
from functools import lru_cache
from typing import Dict, List, NamedTuple, Tuple

from detectron2.data.datasets import load_sem_seg

__all__ = ["FrameName", "parse_frame_name", "load_video_sem_seg"]

_FRAME_NAME = re.compile(r"^(?P<sequence>.+)_(?P<prefix>[A-Za-z]*)(?P<number>\d+)$")


class FrameName(NamedTuple):
    """A frame's file stem split into its parts: ``0006R0_f00930`` -> ("0006R0", "f", 930, 5)."""

    sequence: str
    prefix: str
    number: int
    digits: int


def parse_frame_name(path: str) -> FrameName:
    """Split ``.../<seq>_<prefix><digits>.png`` into a :class:`FrameName`.

    Raises:
        ValueError: naming the file, when its name does not end in ``_<frame number>``.
    """
    stem = os.path.splitext(os.path.basename(path))[0]
    match = _FRAME_NAME.match(stem)
    if match is None:
        raise ValueError(
            f"{path}: a video frame's file name must be <sequence>_<frame number>.png "
            "(e.g. 0001TP_006690.png, 0006R0_f00930.png)"
        )
    number = match.group("number")
    return FrameName(match.group("sequence"), match.group("prefix"), int(number), len(number))


@lru_cache(maxsize=None)
def _frame_numbers(sequence_dir: str, sequence: str, prefix: str, digits: int) -> Tuple[int, ...]:
    """Sorted frame numbers of ``sequence`` present in ``sequence_dir`` (one directory listing)."""
    if not os.path.isdir(sequence_dir):
        raise FileNotFoundError(
            f"sequence '{sequence}': folder {sequence_dir} with its video frames does not exist"
        )
    numbers = []
    for name in os.listdir(sequence_dir):
        if not name.endswith(".png"):
            continue
        frame = parse_frame_name(name)
        if (frame.sequence, frame.prefix, frame.digits) == (sequence, prefix, digits):
            numbers.append(frame.number)
    return tuple(sorted(numbers))


def _contiguous_run(numbers: Tuple[int, ...], number: int) -> Tuple[int, int]:
    """First and last frame of the run of consecutive numbers that contains ``number``."""
    present = set(numbers)
    first = last = number
    while first - 1 in present:
        first -= 1
    while last + 1 in present:
        last += 1
    return first, last


def load_video_sem_seg(image_dir: str, label_dir: str, sequence_root: str) -> List[Dict]:
    """Detectron2 dataset dicts for the annotated frames, with where their clips come from.

    Every dict has Detectron2's ``file_name`` (the annotated frame) and ``sem_seg_file_name``,
    plus:

    * ``sequence`` (str) and ``frame_number`` (int) of the annotated frame;
    * ``sequence_frames`` (first, last): the run of consecutive frame numbers in
      ``sequences/<seq>/`` that contains the annotated frame; clips are padded beyond it
      by repeating the edge frame;
    * ``frame_file_format``: ``str.format`` pattern of a frame's path from its number.

    Raises:
        FileNotFoundError: naming the sequence and the frame, when the annotated frame is
            not among its sequence's frames.
    """
    dataset_dicts = load_sem_seg(label_dir, image_dir, gt_ext="png", image_ext="png")
    for record in dataset_dicts:
        frame = parse_frame_name(record["file_name"])
        sequence_dir = os.path.join(sequence_root, frame.sequence)
        numbers = _frame_numbers(sequence_dir, frame.sequence, frame.prefix, frame.digits)
        if frame.number not in numbers:
            raise FileNotFoundError(
                f"sequence '{frame.sequence}': annotated frame {os.path.basename(record['file_name'])} is missing "
                f"from {sequence_dir} (it must hold the annotated frames and their neighbours)"
            )
        record["sequence"] = frame.sequence
        record["frame_number"] = frame.number
        record["sequence_frames"] = _contiguous_run(numbers, frame.number)
        record["frame_file_format"] = os.path.join(
            sequence_dir, f"{frame.sequence}_{frame.prefix}{{:0{frame.digits}d}}.png"
        )
    _frame_numbers.cache_clear()
    return dataset_dicts
