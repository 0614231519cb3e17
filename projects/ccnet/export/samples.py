"""The sample input an export is traced with and checked on: image files, or a generated image."""
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..data import build_dataset_mapper
from ..data.sem_seg_mapper import SemSegDatasetMapper
from ..inference import is_clip_model

__all__ = ["sample_inputs", "generated_image"]


def generated_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8: noise with a few bright rectangles and discs (something to detect)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
    ys, xs = np.mgrid[:height, :width]
    for _ in range(4):
        colour = rng.integers(120, 256, 3, dtype=np.uint8)
        cy, cx = rng.integers(0, height), rng.integers(0, width)
        radius = rng.integers(4, max(5, min(height, width) // 4))
        if rng.random() < 0.5:
            inside = (abs(ys - cy) <= radius) & (abs(xs - cx) <= radius)
        else:
            inside = (ys - cy) ** 2 + (xs - cx) ** 2 <= radius**2
        image[inside] = colour
    return image


def _test_size(cfg) -> Tuple[int, int]:
    """A 4:3 landscape size at the config's test resolution (short edge MIN_SIZE_TEST)."""
    short = cfg.INPUT.MIN_SIZE_TEST or 128
    long = min(round(short * 4 / 3), cfg.INPUT.MAX_SIZE_TEST or 10**9)
    return short, long


def sample_inputs(
    cfg, image_files: Sequence[str] = (), size: Optional[Tuple[int, int]] = None
) -> List[Dict[str, torch.Tensor]]:
    """
    One model input, ``[{"image": tensor}]``, preprocessed as at test time.

    Args:
        image_files: images read and resized by the config's test-time dataset mapper; a video
            model (``INPUT.CLIP.LENGTH`` T) takes T frames, or one that is repeated. Empty: a
            generated image (:func:`generated_image`).
        size: (height, width) of the generated image; default: the config's test size.
    Returns:
        ``[{"image": (3, H, W) float32}]``, or ``(T, 3, H, W)`` for a video model.
    """
    clip_length = cfg.INPUT.CLIP.LENGTH if is_clip_model(cfg) else 0
    if image_files:
        if clip_length and len(image_files) not in (1, clip_length):
            raise ValueError(
                f"a video model with INPUT.CLIP.LENGTH {clip_length} takes {clip_length} frames "
                f"(or one, repeated); got {len(image_files)} files"
            )
        mapper = build_dataset_mapper(cfg, is_train=False)
        if clip_length:
            # Each frame as the clip mapper treats it at test time (its per-frame resize).
            read = lambda f: SemSegDatasetMapper.__call__(mapper.mapper, {"file_name": f})["image"]  # noqa: E731
            frames = [read(f) for f in image_files]
            image = torch.stack(frames * (clip_length // len(frames)))
        else:
            image = mapper({"file_name": image_files[0]})["image"]
    else:
        height, width = size or _test_size(cfg)
        frames = [generated_image(height, width, seed) for seed in range(max(clip_length, 1))]
        image = torch.stack([torch.from_numpy(f.transpose(2, 0, 1).copy()) for f in frames])
        image = image if clip_length else image[0]
    return [{"image": image.float()}]
