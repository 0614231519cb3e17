"""Dense-prediction inference modes: sliding windows and multi-scale + flip test-time augmentation.

Both take ``predict``, a function from a normalised image batch (1, C, h, w) to logits
(1, K, h, w) at the same size, and return logits (1, K, H, W) for the whole image.
"""
import math
from typing import Callable, List, Optional, Sequence, Tuple

import torch
from torch.nn import functional as F

from detectron2.data.transforms import ResizeShortestEdge

__all__ = ["window_starts", "sliding_window_logits", "multi_scale_flip_logits"]

Predictor = Callable[[torch.Tensor], torch.Tensor]


def window_starts(length: int, window: int, stride: int) -> List[int]:
    """Offsets of windows of size ``window`` that cover [0, length), ``stride`` apart; the last
    window is moved back to end at ``length``. One window at 0 when ``length <= window``."""
    if length <= window:
        return [0]
    return list(range(0, length - window, stride)) + [length - window]


def sliding_window_logits(predict: Predictor, image: torch.Tensor, window: Tuple[int, int], overlap: float) -> torch.Tensor:
    """Average the logits of overlapping windows over the image.

    A window larger than the image shrinks to it (no padding), so a window that covers the
    image gives exactly whole-image inference. Neighbouring windows share ``overlap`` of their
    size (stride ``ceil(window * (1 - overlap))``, as in the public CCNet code).

    Args:
        image: (1, C, H, W) normalised image.
        window: (height, width).
    Returns:
        (1, K, H, W) logits.
    """
    if not 0 <= overlap < 1:
        raise ValueError(f"sliding-window overlap must be in [0, 1), got {overlap}")
    height, width = image.shape[-2:]
    window_h, window_w = min(window[0], height), min(window[1], width)
    stride_h = max(1, math.ceil(window_h * (1 - overlap)))
    stride_w = max(1, math.ceil(window_w * (1 - overlap)))
    total, count = None, image.new_zeros(1, 1, height, width)
    for y in window_starts(height, window_h, stride_h):
        for x in window_starts(width, window_w, stride_w):
            logits = predict(image[..., y : y + window_h, x : x + window_w])
            if total is None:
                total = logits.new_zeros(1, logits.shape[1], height, width)
            total[..., y : y + window_h, x : x + window_w] += logits
            count[..., y : y + window_h, x : x + window_w] += 1
    return total / count


def _resize(x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def multi_scale_flip_logits(
    predict: Predictor,
    image: torch.Tensor,
    *,
    short_edge_sizes: Sequence[int] = (),
    max_size: float = math.inf,
    flip: bool = False,
    flip_class_map: Optional[Sequence[int]] = None,
) -> torch.Tensor:
    """Average the logits over rescaled and horizontally flipped copies of the image.

    Args:
        image: (1, C, H, W) normalised image.
        short_edge_sizes: the image is resized (bilinear) so its short edge has each of these
            lengths, long edge capped at ``max_size`` (Detectron2's ResizeShortestEdge rule);
            empty = the image as it is.
        flip: also predict the horizontal mirror of every scale.
        flip_class_map: class id -> the class it becomes in a mirrored image (e.g. left arm ->
            right arm); None when mirroring changes no class.
    Returns:
        (1, K, H, W) logits, each copy's logits resized back to H x W.
    """
    height, width = image.shape[-2:]
    sizes = [ResizeShortestEdge.get_output_shape(height, width, s, max_size) for s in short_edge_sizes]
    total, copies = 0, 0
    for size in sizes or [(height, width)]:
        scaled = _resize(image, size)
        total = total + _resize(predict(scaled), (height, width))
        copies += 1
        if flip:
            logits = predict(scaled.flip(-1)).flip(-1)
            if flip_class_map is not None:
                logits = logits[:, list(flip_class_map)]
            total = total + _resize(logits, (height, width))
            copies += 1
    return total / copies
