"""The "VideoClipDatasetMapper": T consecutive frames around an annotated frame, augmented alike.

Input: a dataset dict of :func:`ccnet.data.datasets.video.load_video_sem_seg` (``sequence``,
``frame_number``, ``sequence_frames``, ``frame_file_format``; with ``INPUT.CLIP.LENGTH 1`` any
semantic-segmentation dict works).  Output, for the video meta-architecture::

    image            uint8 tensor (T, C, H, W): the clip; the annotated frame is the middle one, T // 2
    sem_seg          long tensor (H, W): label of the annotated frame (when the dict has one)
    clip_file_names  list of the T frame files (edge frames repeated where the run ends)
    height, width    the annotated frame's size before augmentation (output resolution)

Augmentations, label checks and class swaps on mirroring are those of the single-image
``SemSegDatasetMapper`` (:mod:`ccnet.data.sem_seg_mapper`) for the same config.
"""
import copy
from typing import Dict, List

import numpy as np
import torch

from detectron2.config import configurable
from detectron2.data import detection_utils as utils

from .mappers import MAPPER_REGISTRY
from .sem_seg_mapper import SemSegDatasetMapper, image_tensor

__all__ = ["VideoClipDatasetMapper", "clip_frame_numbers", "clip_frame_files"]


def clip_frame_numbers(center: int, first: int, last: int, length: int, stride: int = 1) -> List[int]:
    """Frame numbers of the clip of ``length`` frames, ``stride`` apart, centred on ``center``.

    Positions before ``first`` or after ``last`` (the ends of the sequence) repeat the edge frame.
    """
    half = length // 2
    return [min(max(center + k * stride, first), last) for k in range(-half, half + 1)]


def clip_frame_files(dataset_dict: Dict, length: int, stride: int = 1) -> List[str]:
    """Files of the clip around ``dataset_dict``'s annotated frame (which is its ``file_name``).

    Raises:
        ValueError: naming the file, for a clip longer than 1 from a dict without sequence
            information (a single-image dataset).
    """
    if length == 1:
        return [dataset_dict["file_name"]]
    if "frame_file_format" not in dataset_dict:
        raise ValueError(
            f"{dataset_dict['file_name']}: no sequence information for a clip of {length} frames; "
            "use a video dataset (e.g. camvid_video_*) or INPUT.CLIP.LENGTH 1"
        )
    number = dataset_dict["frame_number"]
    first, last = dataset_dict["sequence_frames"]
    return [
        dataset_dict["file_name"] if n == number else dataset_dict["frame_file_format"].format(n)
        for n in clip_frame_numbers(number, first, last, length, stride)
    ]


@MAPPER_REGISTRY.register()
class VideoClipDatasetMapper(SemSegDatasetMapper):
    """Reads a clip of ``clip_length`` frames and applies one random augmentation to all of them.

    The augmentation is drawn on the annotated frame (and its label, e.g. for the
    category-area crop constraint) and the resulting transforms are applied unchanged to
    every other frame, so all frames stay pixel-aligned.
    """

    @configurable
    def __init__(self, is_train: bool = True, *, clip_length: int, frame_stride: int = 1, **frame_mapper_args):
        """
        Args:
            clip_length: T, odd.
            frame_stride: source-video frames between consecutive clip frames.
            is_train, frame_mapper_args: those of :class:`SemSegDatasetMapper` (``augmentations``
                are drawn on the annotated frame, then replayed on the others).
        """
        if clip_length < 1 or clip_length % 2 == 0:
            raise ValueError(f"INPUT.CLIP.LENGTH must be odd and positive (annotated frame in the middle), got {clip_length}")
        if frame_stride < 1:
            raise ValueError(f"INPUT.CLIP.FRAME_STRIDE must be >= 1, got {frame_stride}")
        super().__init__(is_train, **frame_mapper_args)
        self.clip_length = clip_length
        self.frame_stride = frame_stride

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        # The per-frame settings are the semantic mapper's; only the clip keys are added.
        return {
            **SemSegDatasetMapper.from_config(cfg, is_train),
            "clip_length": cfg.INPUT.CLIP.LENGTH,
            "frame_stride": cfg.INPUT.CLIP.FRAME_STRIDE,
        }

    def _read_clip(self, dataset_dict: Dict, files: List[str]) -> List[np.ndarray]:
        """The clip's frames (H, W, C); raises ValueError naming the sequence if sizes differ."""
        frames = [utils.read_image(f, format=self.image_format) for f in files]
        center = self.clip_length // 2
        for path, frame in zip(files, frames):
            if frame.shape != frames[center].shape:
                raise ValueError(
                    f"sequence '{dataset_dict.get('sequence', '?')}': frame {path} has shape "
                    f"{frame.shape} but the annotated frame {files[center]} has {frames[center].shape}; "
                    "all frames of a clip must have the same size"
                )
        return frames

    def __call__(self, dataset_dict: Dict) -> Dict:
        dataset_dict = copy.deepcopy(dataset_dict)
        files = clip_frame_files(dataset_dict, self.clip_length, self.frame_stride)
        frames = self._read_clip(dataset_dict, files)
        center = self.clip_length // 2
        frames[center], transforms = self.augment(dataset_dict, frames[center])
        frames = [f if t == center else transforms.apply_image(f) for t, f in enumerate(frames)]
        dataset_dict["image"] = torch.stack([image_tensor(f) for f in frames])
        dataset_dict["clip_file_names"] = files
        return dataset_dict
