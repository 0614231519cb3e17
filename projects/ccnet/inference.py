"""Inference with clip models (``CCNetVideoSegmentor`` and its subclasses): predict every frame of a video.

Frame i is predicted from the clip of T frames around it, ``INPUT.CLIP.FRAME_STRIDE`` apart,
with the edge frame repeated at the start and end of the video: the clips the
``VideoClipDatasetMapper`` builds for annotated frames.  Only the frames a clip needs are
held in memory.
"""
from typing import Dict, Iterable, Iterator, Tuple

import numpy as np
import torch

from . import compat

compat.apply()  # before Detectron2 is imported

from detectron2.modeling import META_ARCH_REGISTRY  # noqa: E402

from .data import build_dataset_mapper  # noqa: E402
from .data.clip_mapper import clip_frame_numbers  # noqa: E402
from .engine.defaults import Predictor  # noqa: E402
from .modeling.meta_arch import CCNetVideoSegmentor  # noqa: E402

__all__ = ["ClipPredictor", "is_clip_model"]


def is_clip_model(cfg) -> bool:
    """Whether ``cfg``'s model takes clips (T, C, H, W) rather than images: whether its
    ``MODEL.META_ARCHITECTURE`` is :class:`CCNetVideoSegmentor` or a subclass.

    Raises:
        KeyError: the meta-architecture is not registered in ``META_ARCH_REGISTRY``.
    """
    architecture = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)
    return isinstance(architecture, type) and issubclass(architecture, CCNetVideoSegmentor)


class ClipPredictor(Predictor):
    """:class:`ccnet.engine.Predictor` (weights, test resize, input format) for clip models.

    ``predictor(frames)`` takes the frames of one video in order (an iterable of (H, W, C)
    arrays in ``INPUT.FORMAT``) and yields ``(frame, predictions)`` for each, predictions
    being the model's output dict for that frame (``"sem_seg"`` (K, H, W) logits).
    """

    def __init__(self, cfg):
        super().__init__(cfg)
        mapper = build_dataset_mapper(cfg, is_train=False)  # T and the stride, as in evaluation
        self.clip_length, self.frame_stride = mapper.clip_length, mapper.frame_stride

    def predict_clip(self, frames) -> Dict:
        """Predictions for the middle frame of a list of T frames (H, W, C)."""
        height, width = frames[len(frames) // 2].shape[:2]
        transform = self.aug.get_transform(frames[len(frames) // 2])
        clip = torch.stack(
            [torch.as_tensor(transform.apply_image(f).astype("float32").transpose(2, 0, 1)) for f in frames]
        )
        with torch.no_grad():
            return self.model([{"image": clip, "height": height, "width": width}])[0]

    def __call__(self, frames: Iterable[np.ndarray]) -> Iterator[Tuple[np.ndarray, Dict]]:
        reach = (self.clip_length // 2) * self.frame_stride
        buffer, source, last = {}, iter(frames), -1
        exhausted = False
        index = 0
        while True:
            while not exhausted and last < index + reach:  # read up to the clip's last frame
                try:
                    buffer[last + 1] = next(source)
                    last += 1
                except StopIteration:
                    exhausted = True
            if index > last:
                return
            numbers = clip_frame_numbers(index, 0, last, self.clip_length, self.frame_stride)
            yield buffer[index], self.predict_clip([buffer[n] for n in numbers])
            buffer.pop(index - reach, None)  # no later clip reaches back that far
            index += 1
