"""A synthetic video dataset whose object classes need temporal context.

Every clip is a short sequence of ``clip_length`` frames; its middle frame is annotated.
Objects of two classes, ``red`` and ``green``, drift slowly over a dark background:

* 0-2 *discs*, which show their class colour in every frame;
* 1-2 *squares*, which are grey in every frame but one, the clip's *cue frame*, where each
  shows its class colour. The cue frame is never the annotated frame.

So a single-frame model (T=1) can segment discs and background, but can only guess the class
of a square (chance: 50% accuracy on square pixels); a clip model whose clip covers the cue
frame (T=``clip_length``) can read it there, at the same place give or take the drift. The
discs make the two colours known to the network from the annotated frames themselves (as an
object's class is, in real video, evidence the network also meets in the frame at hand).
Size, grey level, motion and cue frame are drawn independently of the classes, so nothing
but the cue tells a square's class.  Generated on first use under ``$DETECTRON2_DATASETS``
(default ``./datasets``) in the layout of :mod:`ccnet.data.datasets.video` (CamVid's)::

    temporal/
      sequences/<clip>/<clip>_000000.png ...   every frame of every clip, RGB
      images/{train,val}/<clip>_<mid>.png      the annotated (middle) frames
      labels/{train,val}/<clip>_<mid>.png      their uint8 class ids (index in CLASSES)
      kinds/{train,val}/<clip>_<mid>.png       what each pixel shows (index in KINDS)
      {train,val}.json                         the spec, and each clip's cue frame and objects

and registered as ``temporal_video_{train,val}`` (``evaluator_type="sem_seg"``), read with
the ``VideoClipDatasetMapper``.  Generation is deterministic (one seeded generator per clip),
takes seconds, and is skipped when the same spec is on disk (:mod:`ccnet.data.datasets.synthetic`).
"""
import os
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from ...utils.files import datasets_root
from .synthetic import generate_if_changed, item_rng, register_generated, smooth_grey_background, split_files, write_png
from .video import load_video_sem_seg

__all__ = [
    "CLASSES",
    "KINDS",
    "TemporalSpec",
    "SPLITS",
    "draw_temporal_clip",
    "generate_temporal",
    "load_temporal",
    "register_temporal",
]

CLASSES = ("background", "red", "green")
"""Class names; a label map stores a class as its index here."""

CLASS_RGB = {1: (220, 40, 40), 2: (40, 200, 40)}
"""Colour of an object of each class: a disc in every frame, a square in the cue frame only."""

KINDS = ("background", "disc", "square")
"""What a pixel of an annotated frame shows; the ``kinds/`` maps store the index here."""

IGNORE_LABEL = 255
"""Never written by the generator (every pixel is labelled); declared for the evaluator."""

STUFF_COLORS = ((0, 0, 0), (230, 40, 40), (40, 200, 40))
"""RGB colour of each class when drawing predictions."""


@dataclass(frozen=True)
class TemporalSpec:
    """What one split contains; stored in the split's JSON, so a changed spec regenerates."""

    num_clips: int
    seed: int
    image_size: int = 32
    clip_length: int = 5  # frames per clip; the middle one is annotated
    min_object_size: int = 8  # side of a square / diameter of a disc, pixels
    max_object_size: int = 14
    max_squares: int = 2
    max_discs: int = 2
    max_speed: float = 0.5  # pixels per frame along each axis
    background_contrast: float = 5.0  # grey-level amplitude of the smooth background pattern
    frame_noise: float = 2.0  # std of the pixel noise drawn anew in every frame
    version: int = 3  # bump when the drawing code changes

    @property
    def annotated_frame(self) -> int:
        return self.clip_length // 2


SPLITS = {
    "train": TemporalSpec(num_clips=3000, seed=0),
    "val": TemporalSpec(num_clips=200, seed=1),
}


def _trajectory(rng: np.random.Generator, spec: TemporalSpec, side: int) -> np.ndarray:
    """(clip_length, 2) integer top-left (x, y) of an object drifting at constant speed, inside the frame."""
    velocity = rng.uniform(-spec.max_speed, spec.max_speed, size=2)
    span = np.abs(velocity) * (spec.clip_length - 1)
    low = np.where(velocity < 0, span, 0)
    high = spec.image_size - side - np.where(velocity > 0, span, 0)
    start = rng.uniform(low, high)
    steps = np.arange(spec.clip_length)[:, None]
    return np.round(start + steps * velocity).astype(int)


def draw_temporal_clip(spec: TemporalSpec, index: int) -> Tuple[List[np.ndarray], np.ndarray, np.ndarray, dict]:
    """Draw clip ``index`` of a split.

    Returns:
        frames: ``clip_length`` (S, S, 3) uint8 RGB frames.
        label: (S, S) uint8 class ids of the annotated (middle) frame.
        kinds: (S, S) uint8 index in :data:`KINDS` of each pixel of the annotated frame.
        record: {"cue_frame": int, "objects": [{"kind", "category_id"}] in drawing order}.
    """
    rng = item_rng(spec, index)
    size, length = spec.image_size, spec.clip_length
    others = [t for t in range(length) if t != spec.annotated_frame]
    cue_frame = int(rng.choice(others))
    background = smooth_grey_background(rng, size, mean_range=(20, 90), contrast=spec.background_contrast)
    frames = [background + rng.normal(0, spec.frame_noise, size=background.shape) for _ in range(length)]
    label = np.zeros((size, size), np.uint8)
    yy, xx = np.mgrid[0:size, 0:size]

    classes = tuple(CLASS_RGB)
    objects = [("disc", int(rng.choice(classes))) for _ in range(rng.integers(0, spec.max_discs + 1))]
    objects += [("square", int(rng.choice(classes))) for _ in range(rng.integers(1, spec.max_squares + 1))]
    kinds = np.zeros((size, size), np.uint8)
    for shape, category in objects:  # later objects occlude earlier ones, in every frame alike
        side = int(rng.integers(spec.min_object_size, spec.max_object_size + 1))
        grey = rng.uniform(110, 170)
        for t, (x, y) in enumerate(_trajectory(rng, spec, side)):
            if shape == "disc":
                r = side / 2
                mask = (xx - x - r + 0.5) ** 2 + (yy - y - r + 0.5) ** 2 <= r * r
            else:
                mask = (xx >= x) & (xx < x + side) & (yy >= y) & (yy < y + side)
            frames[t][mask] = CLASS_RGB[category] if t == cue_frame or shape == "disc" else grey
            if t == spec.annotated_frame:
                label[mask] = category
                kinds[mask] = KINDS.index(shape)
    frames = [np.clip(np.round(f), 0, 255).astype(np.uint8) for f in frames]
    record = {"cue_frame": cue_frame, "objects": [{"kind": k, "category_id": c} for k, c in objects]}
    return frames, label, kinds, record


def _paths(root: str, split: str) -> Tuple[str, str, str, str, str]:
    """(json file, image folder, label folder, kind folder, sequence root) of a split."""
    return split_files(root, "temporal", split, ("images", "labels", "kinds")) + (
        os.path.join(root, "temporal", "sequences"),
    )


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
    json_file, image_dir, label_dir, kind_dir, sequence_root = _paths(root, split)
    return generate_if_changed(
        json_file,
        spec,
        lambda: _write_split(spec, split, image_dir, label_dir, kind_dir, sequence_root),
        folders=[image_dir, label_dir, kind_dir],
        empty_folders=True,  # the loader lists the annotated frames it finds: no stale ones
    )


def _write_split(
    spec: TemporalSpec, split: str, image_dir: str, label_dir: str, kind_dir: str, sequence_root: str
) -> dict:
    """Write the clips and the annotated frames, labels and kinds of a split; the content of its JSON file."""
    records = []
    for index in range(spec.num_clips):
        frames, label, kinds, record = draw_temporal_clip(spec, index)
        clip = f"{split}{index:05d}"
        clip_dir = os.path.join(sequence_root, clip)
        os.makedirs(clip_dir, exist_ok=True)
        for t, frame in enumerate(frames):
            write_png(os.path.join(clip_dir, f"{clip}_{t:06d}.png"), frame)
        annotated = f"{clip}_{spec.annotated_frame:06d}.png"
        write_png(os.path.join(image_dir, annotated), frames[spec.annotated_frame])
        write_png(os.path.join(label_dir, annotated), label)
        write_png(os.path.join(kind_dir, annotated), kinds)
        records.append({"clip": clip, **record})
    return {"spec": asdict(spec), "clips": records}


def load_temporal(root: str, split: str, spec: Optional[TemporalSpec] = None) -> List[Dict]:
    """Generate the split if needed; its dataset dicts (see :func:`load_video_sem_seg`), each
    with ``kind_file_name``: the map of :data:`KINDS` of its annotated frame."""
    generate_temporal(root, split, spec)
    _, image_dir, label_dir, kind_dir, sequence_root = _paths(root, split)
    records = load_video_sem_seg(image_dir, label_dir, sequence_root)
    for record in records:
        record["kind_file_name"] = os.path.join(kind_dir, os.path.basename(record["sem_seg_file_name"]))
    return records


def register_temporal(root: str) -> None:
    """Register ``temporal_video_{train,val}``; their files are generated when first loaded."""
    for split in SPLITS:
        name = f"temporal_video_{split}"
        _, image_dir, label_dir, _, sequence_root = _paths(root, split)
        register_generated(
            name,
            lambda split=split: load_temporal(root, split),
            stuff_classes=list(CLASSES),
            stuff_colors=[list(c) for c in STUFF_COLORS],
            object_kinds=list(KINDS),
            ignore_label=IGNORE_LABEL,
            evaluator_type="sem_seg",
            image_root=image_dir,
            sem_seg_root=label_dir,
            sequence_root=sequence_root,
        )


register_temporal(datasets_root())
