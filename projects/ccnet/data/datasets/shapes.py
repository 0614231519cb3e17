"""A synthetic COCO-format instance segmentation dataset: coloured shapes on textured backgrounds.

It is written on first use, in COCO's on-disk format, under
``$DETECTRON2_DATASETS/shapes_instances/`` (default ``./datasets``)::

    shapes_instances/
      train/000000.png ...                 RGB images (H x W = IMAGE_SIZE)
      val/000000.png ...
      annotations/instances_train.json     COCO instances, masks as RLE
      annotations/instances_val.json

and registered with :func:`register_coco_instances` as ``shapes_instances_train`` and
``shapes_instances_val``, so Detectron2's loaders and ``COCOEvaluator`` treat it like COCO
(``INPUT.MASK_FORMAT: bitmask``, since occluded masks are not polygons).

Every image has 1-4 shapes of ``CLASSES`` with random size, rotation and colour, drawn in
order so later shapes occlude earlier ones; an annotation is the *visible* part of a shape
(its box is the box of that mask), and shapes that end up mostly hidden are dropped.
Backgrounds mix a smooth random colour field with stripes and pixel noise.  Generation is
deterministic (each image has its own seeded generator), takes a few seconds, and is
skipped when the same spec is on disk (:mod:`ccnet.data.datasets.synthetic`).
"""
import os
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import pycocotools.mask as mask_util
import tqdm
from detectron2.data.datasets import load_coco_json

from ...utils.files import datasets_root
from .synthetic import generate_if_changed, item_rng, register_generated, write_png

__all__ = ["CLASSES", "ShapesSpec", "SPLITS", "generate_shapes", "register_shapes_instances"]

CLASSES = ("circle", "square", "triangle", "cross")
"""Category names; COCO category ids are 1..len(CLASSES) in this order."""

IMAGE_SIZE = 128
"""Height and width of every image, in pixels."""


@dataclass(frozen=True)
class ShapesSpec:
    """What one split contains; stored in the JSON's ``info`` so a changed spec regenerates."""

    num_images: int
    seed: int
    image_size: int = IMAGE_SIZE
    max_shapes: int = 4
    min_shape_size: int = 18  # side of the shape's bounding square, pixels
    max_shape_size: int = 52
    min_visible_fraction: float = 0.4  # hide less than this and the shape is dropped
    version: int = 1  # bump when the drawing code changes


SPLITS = {
    "train": ShapesSpec(num_images=2000, seed=0),
    "val": ShapesSpec(num_images=200, seed=1),
}


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A textured (size, size, 3) float32 background in [0, 255]: smooth colour field + stripes + noise."""
    coarse = rng.uniform(40, 215, size=(4, 4, 3)).astype(np.float32)
    image = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(6, 24)
    phase = (xx * np.cos(angle) + yy * np.sin(angle)) * (2 * np.pi / period)
    image += rng.uniform(10, 35) * np.sin(phase)[..., None] * rng.uniform(0.3, 1.0, size=3)
    image += rng.normal(0, rng.uniform(3, 12), size=image.shape)
    return np.clip(image, 0, 255)


def _shape_mask(rng: np.random.Generator, category: str, spec: ShapesSpec) -> np.ndarray:
    """An (image_size, image_size) bool mask with one shape: random size, place and rotation."""
    size = spec.image_size
    side = rng.uniform(spec.min_shape_size, spec.max_shape_size)
    half = side / 2
    center = rng.uniform(half * 0.6, size - half * 0.6, size=2)
    angle = rng.uniform(0, 2 * np.pi)
    mask = np.zeros((size, size), np.uint8)
    if category == "circle":
        cv2.circle(mask, tuple(int(round(c)) for c in center), int(round(half)), 1, -1, cv2.LINE_8)
        return mask.astype(bool)
    if category == "square":
        corners = [np.pi / 4 + k * np.pi / 2 for k in range(4)]
        radii = [half * np.sqrt(2)] * 4
    elif category == "triangle":
        corners = [k * 2 * np.pi / 3 for k in range(3)]
        radii = [half * 1.15] * 3
    elif category == "cross":  # a plus sign, arms one third of the side wide
        t = half / 3
        outline = [(t, half), (t, t), (half, t), (half, -t), (t, -t), (t, -half),
                   (-t, -half), (-t, -t), (-half, -t), (-half, t), (-t, t), (-t, half)]
        corners = [np.arctan2(y, x) for x, y in outline]
        radii = [np.hypot(x, y) for x, y in outline]
    else:
        raise ValueError(f"unknown shape category {category!r}; known: {CLASSES}")
    points = [
        (center[0] + r * np.cos(a + angle), center[1] + r * np.sin(a + angle)) for a, r in zip(corners, radii)
    ]
    cv2.fillPoly(mask, [np.round(np.array(points)).astype(np.int32)], 1, cv2.LINE_8)
    return mask.astype(bool)


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A random RGB colour at least ~90 (L2) away from the mean background under ``mask``."""
    under = background[mask].mean(axis=0)
    for _ in range(20):
        colour = rng.uniform(0, 255, size=3)
        if np.linalg.norm(colour - under) > 90:
            break
    return colour


def _draw_image(spec: ShapesSpec, index: int):
    """Return (RGB uint8 image, [(category index, visible bool mask), ...]) for image ``index``."""
    rng = item_rng(spec, index)
    image = _background(rng, spec.image_size)
    shapes = []  # [category index, visible mask, full area], in drawing order
    for _ in range(rng.integers(1, spec.max_shapes + 1)):
        category = int(rng.integers(len(CLASSES)))
        mask = _shape_mask(rng, CLASSES[category], spec)
        colour = _contrasting_colour(rng, image, mask)
        shading = rng.normal(0, 6, size=(int(mask.sum()), 1))
        image[mask] = np.clip(colour + shading, 0, 255)
        for shape in shapes:
            shape[1] &= ~mask  # the new shape occludes the earlier ones
        shapes.append([category, mask, mask.sum()])
    visible = [(c, m) for c, m, full in shapes if m.sum() >= spec.min_visible_fraction * full]
    return image.astype(np.uint8), visible


def _split_paths(root: str, split: str):
    base = os.path.join(root, "shapes_instances")
    return os.path.join(base, "annotations", f"instances_{split}.json"), os.path.join(base, split)


def generate_shapes(root: str, split: str, spec: ShapesSpec = None) -> str:
    """Write the images and COCO JSON of ``split`` under ``root`` unless already there.

    Args:
        root: the datasets folder (``$DETECTRON2_DATASETS``).
        split: "train" or "val" (chooses the default spec).
        spec: override what is generated (tests use small ones).

    Returns:
        The path of the COCO JSON file.  The JSON is written last (atomically), so an
        interrupted run is redone next time.
    """
    spec = spec or SPLITS[split]
    json_file, image_root = _split_paths(root, split)
    return generate_if_changed(
        json_file, spec, lambda: _write_split(spec, split, image_root), folders=[image_root], spec_key=("info", "spec")
    )


def _write_split(spec: ShapesSpec, split: str, image_root: str) -> dict:
    """Write the images of a split; its COCO instances (the JSON file's content)."""
    images, annotations = [], []
    for index in tqdm.tqdm(range(spec.num_images), desc=f"generating shapes_instances/{split}", unit="image"):
        image, shapes = _draw_image(spec, index)
        file_name = f"{index:06d}.png"
        write_png(os.path.join(image_root, file_name), image)
        images.append({"id": index + 1, "file_name": file_name, "height": spec.image_size, "width": spec.image_size})
        for category, mask in shapes:
            rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": index + 1,
                    "category_id": category + 1,
                    "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")},
                    "area": float(mask_util.area(rle)),
                    "bbox": [float(v) for v in mask_util.toBbox(rle)],
                    "iscrowd": 0,
                }
            )
    return {
        "info": {"description": "ccnet synthetic shapes (instances)", "spec": asdict(spec)},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(CLASSES)],
    }


def register_shapes_instances(root: str) -> None:
    """Register ``shapes_instances_{train,val}`` as COCO instances; their files are generated when first loaded."""
    for split in SPLITS:
        name = f"shapes_instances_{split}"
        json_file, image_root = _split_paths(root, split)
        # The metadata register_coco_instances sets, with a loader that first writes the files.
        register_generated(
            name,
            lambda split=split, name=name, image_root=image_root: load_coco_json(
                generate_shapes(root, split), image_root, name
            ),
            json_file=json_file,
            image_root=image_root,
            evaluator_type="coco",
            thing_classes=list(CLASSES),
            # COCOEvaluator maps contiguous ids back to these even before the loader ran.
            thing_dataset_id_to_contiguous_id={i + 1: i for i in range(len(CLASSES))},
        )


register_shapes_instances(datasets_root())
