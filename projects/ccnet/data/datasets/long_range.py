"""A synthetic semantic segmentation dataset whose object classes need long-range context.

Every image holds one coloured square, the *cue*, and 1-3 smaller grey rectangles, the
*objects*.  The cue's class is its own colour (``cue_red``, ``cue_green``, ``cue_blue``: a
local decision, and it makes the network encode the colour).  All objects look alike; the
class of every object in an image (``object_red``, ...) is the colour of the cue, which lies
far away from it:

* every object is at least ``min_gap`` pixels away from the cue along the rows or the
  columns (so beyond the receptive field of the benchmark's small backbone and head: a
  context-free FCN can only guess, 1 in ``len(CUE_COLOURS)``);
* an *off-axis* object shares neither rows nor columns with the cue: it is at least
  ``min_gap`` pixels away along both axes, so one criss-cross pass (RCCA R=1, which sees
  the pixel's row and column) cannot reach the cue; two passes (R=2) or a non-local block can;
* an *aligned* object shares at least ``min_overlap`` rows (or columns) with the cue and is
  ``min_gap`` away along the other axis: one criss-cross pass reaches the cue.

A fraction ``aligned_fraction`` of the objects is aligned; the JSON records which.  Object
size, position and grey level are drawn independently of the cue's colour, so nothing but
the cue tells the class.  Generated on first use under ``$DETECTRON2_DATASETS`` (default
``./datasets``)::

    long_range/
      images/{train,val}/000000.png     RGB images, image_size x image_size
      labels/{train,val}/000000.png     uint8 class ids (index in CLASSES; no ignored pixels)
      {train,val}.json                  the spec, and per image the cue and object boxes

and registered as ``long_range_sem_seg_{train,val}`` (``evaluator_type="sem_seg"``).  Each
dataset dict also carries ``cue`` and ``objects`` (boxes ``[x0, y0, x1, y1)`` in pixels,
``category_id``, and ``aligned`` for objects).  Generation is deterministic (one seeded
generator per image), takes a few seconds, and is skipped when the same spec is on disk
(:mod:`ccnet.data.datasets.synthetic`).
"""
import json
import os
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from ...utils.files import datasets_root
from .synthetic import generate_if_changed, item_rng, register_generated, smooth_grey_background, split_files, write_png

__all__ = [
    "CLASSES",
    "CUE_CLASSES",
    "CUE_COLOURS",
    "CUE_DEPENDENT_CLASSES",
    "LongRangeSpec",
    "SPLITS",
    "axis_gap",
    "draw_long_range_image",
    "generate_long_range",
    "load_long_range",
    "register_long_range",
]

CUE_COLOURS = ("red", "green", "blue")
"""Cue colour k (channel k of RGB is bright): the cue is class ``CUE_CLASSES[k]`` and every
object of the image class ``CUE_DEPENDENT_CLASSES[k]``."""

CLASSES = (
    ("background",)
    + tuple(f"cue_{colour}" for colour in CUE_COLOURS)
    + tuple(f"object_{colour}" for colour in CUE_COLOURS)
)
"""Class names; a label map stores a class as its index here."""

CUE_CLASSES = tuple(range(1, 1 + len(CUE_COLOURS)))
"""The cue classes: told apart by the cue's own colour (local)."""
CUE_DEPENDENT_CLASSES = tuple(range(1 + len(CUE_COLOURS), len(CLASSES)))
"""The object classes, which only the cue tells apart."""

IGNORE_LABEL = 255
"""Never written by the generator (every pixel is labelled); declared for the evaluator."""

STUFF_COLORS = ((0, 0, 0), (150, 20, 20), (20, 110, 20), (30, 50, 140), (255, 90, 90), (90, 230, 90), (100, 140, 255))
"""RGB colour of each class when drawing predictions."""


@dataclass(frozen=True)
class LongRangeSpec:
    """What one split contains; stored in the split's JSON, so a changed spec regenerates."""

    num_images: int
    seed: int
    image_size: int = 128
    cue_size: int = 40  # side of the square cue, pixels
    min_object_size: int = 12  # side lengths of an object rectangle, pixels
    max_object_size: int = 20
    max_objects: int = 3
    min_gap: int = 40  # empty pixels between object and cue along the separating axis (both, off-axis)
    min_overlap: int = 8  # rows (columns) an aligned object shares with the cue, at least
    min_object_spacing: int = 4  # empty pixels between two objects, at least
    aligned_fraction: float = 0.5
    version: int = 2  # bump when the drawing code changes


SPLITS = {
    "train": LongRangeSpec(num_images=1000, seed=0),
    "val": LongRangeSpec(num_images=200, seed=1),
}

Box = Tuple[int, int, int, int]  # x0, y0, x1, y1 (half-open), pixels


def axis_gap(a0: int, a1: int, b0: int, b1: int) -> int:
    """Empty pixels between the half-open intervals [a0, a1) and [b0, b1); negative = overlap.

    ``-axis_gap`` is the length of the overlap when the intervals overlap.
    """
    return max(b0 - a1, a0 - b1)


def _separated_starts(size: int, length: int, other: Tuple[int, int], gap: int) -> np.ndarray:
    """Starts s in [0, size - length] with at least ``gap`` empty pixels to ``other``."""
    starts = np.arange(size - length + 1)
    return starts[[axis_gap(s, s + length, *other) >= gap for s in starts]]


def _overlapping_starts(size: int, length: int, other: Tuple[int, int], overlap: int) -> np.ndarray:
    """Starts s in [0, size - length] whose interval shares at least ``overlap`` pixels with ``other``."""
    starts = np.arange(size - length + 1)
    return starts[[-axis_gap(s, s + length, *other) >= overlap for s in starts]]


def _place_object(rng: np.random.Generator, spec: LongRangeSpec, cue: Box, aligned: bool) -> Optional[Box]:
    """A random object box obeying the placement rule, or None when none fits."""
    w, h = rng.integers(spec.min_object_size, spec.max_object_size + 1, size=2)
    cue_x, cue_y = (cue[0], cue[2]), (cue[1], cue[3])
    if aligned:
        overlap = min(spec.min_overlap, spec.cue_size)
        if rng.random() < 0.5:  # shares rows with the cue, far along x
            xs = _separated_starts(spec.image_size, w, cue_x, spec.min_gap)
            ys = _overlapping_starts(spec.image_size, h, cue_y, min(overlap, h))
        else:  # shares columns, far along y
            xs = _overlapping_starts(spec.image_size, w, cue_x, min(overlap, w))
            ys = _separated_starts(spec.image_size, h, cue_y, spec.min_gap)
    else:
        xs = _separated_starts(spec.image_size, w, cue_x, spec.min_gap)
        ys = _separated_starts(spec.image_size, h, cue_y, spec.min_gap)
    if len(xs) == 0 or len(ys) == 0:
        return None
    x0, y0 = int(rng.choice(xs)), int(rng.choice(ys))
    return (x0, y0, x0 + int(w), y0 + int(h))


def _apart(a: Box, b: Box, spacing: int) -> bool:
    return axis_gap(a[0], a[2], b[0], b[2]) >= spacing or axis_gap(a[1], a[3], b[1], b[3]) >= spacing


def _layout(rng: np.random.Generator, spec: LongRangeSpec) -> Tuple[Box, List[Tuple[Box, bool]]]:
    """The cue box and 1..max_objects (object box, aligned) pairs."""
    while True:
        cx, cy = rng.integers(0, spec.image_size - spec.cue_size + 1, size=2)
        cue = (int(cx), int(cy), int(cx) + spec.cue_size, int(cy) + spec.cue_size)
        objects: List[Tuple[Box, bool]] = []
        for _ in range(rng.integers(1, spec.max_objects + 1)):
            aligned = bool(rng.random() < spec.aligned_fraction)
            for _attempt in range(20):
                box = _place_object(rng, spec, cue, aligned)
                if box is not None and all(_apart(box, other, spec.min_object_spacing) for other, _ in objects):
                    objects.append((box, aligned))
                    break
        if objects:
            return cue, objects


def draw_long_range_image(spec: LongRangeSpec, index: int):
    """Draw image ``index`` of a split.

    Returns:
        image: (S, S, 3) uint8 RGB.
        label: (S, S) uint8 class ids.
        record: {"cue": {"bbox", "category_id"}, "objects": [{"bbox", "category_id", "aligned"}]}.
    """
    rng = item_rng(spec, index)
    size = spec.image_size
    cue, objects = _layout(rng, spec)
    colour = int(rng.integers(len(CUE_COLOURS)))  # drawn after the layout: independent of it
    image = smooth_grey_background(rng, size, mean_range=(20, 80), contrast=15)
    label = np.zeros((size, size), np.uint8)
    for (x0, y0, x1, y1), _ in objects:
        image[y0:y1, x0:x1] = rng.uniform(150, 220)  # grey: looks the same in every class
        label[y0:y1, x0:x1] = CUE_DEPENDENT_CLASSES[colour]
    x0, y0, x1, y1 = cue
    cue_rgb = rng.uniform(0, 60, size=3)
    cue_rgb[colour] = rng.uniform(180, 255)
    image[y0:y1, x0:x1] = cue_rgb
    label[y0:y1, x0:x1] = CUE_CLASSES[colour]
    record = {
        "cue": {"bbox": list(cue), "category_id": CUE_CLASSES[colour]},
        "objects": [
            {"bbox": list(box), "category_id": CUE_DEPENDENT_CLASSES[colour], "aligned": aligned}
            for box, aligned in objects
        ],
    }
    return np.clip(np.round(image), 0, 255).astype(np.uint8), label, record


def _split_paths(root: str, split: str) -> Tuple[str, str, str]:
    """(json file, image folder, label folder) of a split."""
    return split_files(root, "long_range", split, ("images", "labels"))


def generate_long_range(root: str, split: str, spec: Optional[LongRangeSpec] = None) -> str:
    """Write the images, label maps and JSON of ``split`` under ``root`` unless already there.

    Args:
        root: the datasets folder (``$DETECTRON2_DATASETS``).
        split: "train" or "val" (chooses the default spec).
        spec: override what is generated (tests use small ones).

    Returns:
        The path of the split's JSON file.  It is written last (atomically), so an
        interrupted run is redone next time.
    """
    spec = spec or SPLITS[split]
    json_file, image_dir, label_dir = _split_paths(root, split)
    return generate_if_changed(
        json_file, spec, lambda: _write_split(spec, image_dir, label_dir), folders=[image_dir, label_dir]
    )


def _write_split(spec: LongRangeSpec, image_dir: str, label_dir: str) -> dict:
    """Write the images and label maps of a split; the content of its JSON file."""
    records = []
    for index in range(spec.num_images):
        image, label, record = draw_long_range_image(spec, index)
        file_name = f"{index:06d}.png"
        write_png(os.path.join(image_dir, file_name), image)
        write_png(os.path.join(label_dir, file_name), label)
        records.append({"file_name": file_name, **record})
    return {"spec": asdict(spec), "images": records}


def load_long_range(root: str, split: str, spec: Optional[LongRangeSpec] = None) -> List[Dict]:
    """Generate the split if needed and return its Detectron2 dataset dicts.

    Each dict has ``file_name``, ``sem_seg_file_name``, ``height``, ``width``, ``image_id``,
    and this dataset's ``cue`` and ``objects`` (see the module docstring).
    """
    json_file = generate_long_range(root, split, spec)
    _, image_dir, label_dir = _split_paths(root, split)
    with open(json_file) as f:
        content = json.load(f)
    size = content["spec"]["image_size"]
    return [
        {
            "file_name": os.path.join(image_dir, record["file_name"]),
            "sem_seg_file_name": os.path.join(label_dir, record["file_name"]),
            "height": size,
            "width": size,
            "image_id": os.path.splitext(record["file_name"])[0],
            "cue": record["cue"],
            "objects": record["objects"],
        }
        for record in content["images"]
    ]


def register_long_range(root: str) -> None:
    """Register ``long_range_sem_seg_{train,val}``; their files are generated when first loaded."""
    for split in SPLITS:
        name = f"long_range_sem_seg_{split}"
        _, image_dir, label_dir = _split_paths(root, split)
        register_generated(
            name,
            lambda split=split: load_long_range(root, split),
            stuff_classes=list(CLASSES),
            stuff_colors=[list(c) for c in STUFF_COLORS],
            cue_dependent_classes=list(CUE_DEPENDENT_CLASSES),
            ignore_label=IGNORE_LABEL,
            evaluator_type="sem_seg",
            image_root=image_dir,
            sem_seg_root=label_dir,
        )


register_long_range(datasets_root())
