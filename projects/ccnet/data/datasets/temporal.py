"""A synthetic video dataset whose object classes need temporal context.

Every clip is a short sequence of ``clip_length`` frames; its middle frame is annotated.
Each clip shows 1-3 grey squares (the *objects*) and 0-2 white discs drifting slowly over
a textured background.  Squares of the two classes look exactly alike, except in one frame
of the clip, the *cue frame*, where each square is filled with the colour of its class
(``object_red`` or ``object_green``).  The cue frame is never the annotated frame, so:

* a single-frame model (T=1) sees only grey squares: it can only guess their class,
  1 in 2 (discs and background it can segment);
* a clip model whose clip covers the cue frame (T=``clip_length``) can read every square's
  class from the cue frame, at the same place give or take the drift.

Size, grey level, motion and cue frame are drawn independently of the classes, so nothing
but the cue tells them apart.  Generated on first use under ``$DETECTRON2_DATASETS``
(default ``./datasets``) in the layout of :mod:`ccnet.data.datasets.video` (CamVid's)::

    temporal/
      sequences/<clip>/<clip>_000000.png ...   every frame of every clip, RGB
      images/{train,val}/<clip>_<mid>.png      the annotated (middle) frames
      labels/{train,val}/<clip>_<mid>.png      their uint8 class ids (index in CLASSES)
      {train,val}.json                         the spec, and each clip's cue frame

and registered as ``temporal_video_{train,val}`` (``evaluator_type="sem_seg"``), read with
the ``VideoClipDatasetMapper``.  Generation is deterministic (one seeded generator per clip),
takes seconds, and is skipped when the same spec is on disk.
"""
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog

from .video import load_video_sem_seg

__all__ = [
    "CLASSES",
    "CUE_DEPENDENT_CLASSES",
    "TemporalSpec",
    "SPLITS",
    "draw_temporal_clip",
    "generate_temporal",
    "load_temporal",
    "register_temporal",
]

logger = logging.getLogger(__name__)

CLASSES = ("background", "disc", "object_red", "object_green")
"""Class names; a label map stores a class as its index here."""

DISC_CLASS = 1
CUE_DEPENDENT_CLASSES = (2, 3)
"""The square classes, which only the cue frame tells apart."""

CUE_RGB = {2: (220, 40, 40), 3: (40, 200, 40)}
"""Fill colour of a square of each class in the cue frame."""

IGNORE_LABEL = 255
"""Never written by the generator (every pixel is labelled); declared for the evaluator."""

STUFF_COLORS = ((0, 0, 0), (255, 255, 255), (230, 40, 40), (40, 200, 40))
"""RGB colour of each class when drawing predictions."""


@dataclass(frozen=True)
class TemporalSpec:
    """What one split contains; stored in the split's JSON, so a changed spec regenerates."""

    num_clips: int
    seed: int
    image_size: int = 64
    clip_length: int = 5  # frames per clip; the middle one is annotated
    min_object_size: int = 10  # side of a square / diameter of a disc, pixels
    max_object_size: int = 16
    max_squares: int = 3
    max_discs: int = 2
    max_speed: float = 1.0  # pixels per frame along each axis
    version: int = 1  # bump when the drawing code changes

    @property
    def annotated_frame(self) -> int:
        return self.clip_length // 2


SPLITS = {
    "train": TemporalSpec(num_clips=400, seed=0),
    "val": TemporalSpec(num_clips=100, seed=1),
}


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A dark, colourless, smoothly varying (size, size, 3) float background."""
    coarse = rng.uniform(20, 90) + rng.uniform(-20, 20, size=(4, 4)).astype(np.float32)
    field = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    return np.repeat(field[:, :, None], 3, axis=2)


def _trajectory(rng: np.random.Generator, spec: TemporalSpec, side: int) -> np.ndarray:
    """(clip_length, 2) integer top-left (x, y) of an object drifting at constant speed, inside the frame."""
    velocity = rng.uniform(-spec.max_speed, spec.max_speed, size=2)
    span = np.abs(velocity) * (spec.clip_length - 1)
    low = np.where(velocity < 0, span, 0)
    high = spec.image_size - side - np.where(velocity > 0, span, 0)
    start = rng.uniform(low, high)
    steps = np.arange(spec.clip_length)[:, None]
    return np.round(start + steps * velocity).astype(int)


def draw_temporal_clip(spec: TemporalSpec, index: int) -> Tuple[List[np.ndarray], np.ndarray, dict]:
    """Draw clip ``index`` of a split.

    Returns:
        frames: ``clip_length`` (S, S, 3) uint8 RGB frames.
        label: (S, S) uint8 class ids of the annotated (middle) frame.
        record: {"cue_frame": int, "squares": [category ids]}.
    """
    rng = np.random.default_rng([spec.seed, index, spec.version])
    size, length = spec.image_size, spec.clip_length
    others = [t for t in range(length) if t != spec.annotated_frame]
    cue_frame = int(rng.choice(others))
    background = _background(rng, size)
    frames = [background + rng.normal(0, 4, size=background.shape) for _ in range(length)]
    label = np.zeros((size, size), np.uint8)
    yy, xx = np.mgrid[0:size, 0:size]

    squares = []
    objects = [("disc", DISC_CLASS)] * int(rng.integers(0, spec.max_discs + 1))
    for _ in range(rng.integers(1, spec.max_squares + 1)):
        category = int(rng.choice(CUE_DEPENDENT_CLASSES))
        objects.append(("square", category))
        squares.append(category)
    for shape, category in objects:  # later objects occlude earlier ones, in every frame alike
        side = int(rng.integers(spec.min_object_size, spec.max_object_size + 1))
        grey = rng.uniform(110, 170) if shape == "square" else rng.uniform(200, 250)
        for t, (x, y) in enumerate(_trajectory(rng, spec, side)):
            if shape == "disc":
                r = side / 2
                mask = (xx - x - r + 0.5) ** 2 + (yy - y - r + 0.5) ** 2 <= r * r
            else:
                mask = (xx >= x) & (xx < x + side) & (yy >= y) & (yy < y + side)
            frames[t][mask] = CUE_RGB[category] if t == cue_frame and shape == "square" else grey
            if t == spec.annotated_frame:
                label[mask] = category
    frames = [np.clip(np.round(f), 0, 255).astype(np.uint8) for f in frames]
    return frames, label, {"cue_frame": cue_frame, "squares": squares}


def _paths(root: str, split: str) -> Tuple[str, str, str, str]:
    """(json file, image folder, label folder, sequence root) of a split."""
    base = os.path.join(root, "temporal")
    return (
        os.path.join(base, f"{split}.json"),
        os.path.join(base, "images", split),
        os.path.join(base, "labels", split),
        os.path.join(base, "sequences"),
    )


def _write(path: str, array: np.ndarray) -> None:
    if not cv2.imwrite(path, array):
        raise OSError(f"could not write {path}")


def generate_temporal(root: str, split: str, spec: Optional[TemporalSpec] = None) -> str:
    """Write the clips, annotated frames, labels and JSON of ``split`` unless already there.

    Args:
        root: the datasets folder (``$DETECTRON2_DATASETS``).
        split: "train" or "val" (chooses the default spec and the clip names).
        spec: override what is generated (tests use small ones).

    Returns:
        The split's JSON file; it is written last (atomically), so an interrupted run is
        redone next time.
    """
    spec = spec or SPLITS[split]
    json_file, image_dir, label_dir, sequence_root = _paths(root, split)
    if os.path.isfile(json_file):
        with open(json_file) as f:
            if json.load(f).get("spec") == asdict(spec):
                return json_file
    logger.info(f"Generating {spec.num_clips} temporal-context clips under {os.path.dirname(json_file)} ...")
    for folder in (image_dir, label_dir):  # the annotated frames define the dataset: no stale ones
        shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(image_dir, exist_ok=True)
    os.makedirs(label_dir, exist_ok=True)
    records = []
    for index in range(spec.num_clips):
        frames, label, record = draw_temporal_clip(spec, index)
        clip = f"{split}{index:05d}"
        clip_dir = os.path.join(sequence_root, clip)
        os.makedirs(clip_dir, exist_ok=True)
        for t, frame in enumerate(frames):
            _write(os.path.join(clip_dir, f"{clip}_{t:06d}.png"), frame[:, :, ::-1])
        annotated = f"{clip}_{spec.annotated_frame:06d}.png"
        _write(os.path.join(image_dir, annotated), frames[spec.annotated_frame][:, :, ::-1])
        _write(os.path.join(label_dir, annotated), label)
        records.append({"clip": clip, **record})
    tmp_file = f"{json_file}.{os.getpid()}.tmp"
    with open(tmp_file, "w") as f:
        json.dump({"spec": asdict(spec), "clips": records}, f)
    os.replace(tmp_file, json_file)
    return json_file


def load_temporal(root: str, split: str, spec: Optional[TemporalSpec] = None) -> List[Dict]:
    """Generate the split if needed; its dataset dicts (see :func:`load_video_sem_seg`)."""
    generate_temporal(root, split, spec)
    _, image_dir, label_dir, sequence_root = _paths(root, split)
    return load_video_sem_seg(image_dir, label_dir, sequence_root)


def register_temporal(root: str) -> None:
    """Register ``temporal_video_{train,val}``; their files are generated when first loaded."""
    for split in SPLITS:
        name = f"temporal_video_{split}"
        _, image_dir, label_dir, sequence_root = _paths(root, split)
        DatasetCatalog.register(name, lambda split=split: load_temporal(root, split))
        MetadataCatalog.get(name).set(
            stuff_classes=list(CLASSES),
            stuff_colors=[list(c) for c in STUFF_COLORS],
            cue_dependent_classes=list(CUE_DEPENDENT_CLASSES),
            ignore_label=IGNORE_LABEL,
            evaluator_type="sem_seg",
            image_root=image_dir,
            sem_seg_root=label_dir,
            sequence_root=sequence_root,
            generated_on_first_use=True,
        )


register_temporal(os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets")))
