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
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from detectron2.config import configurable
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from .mappers import MAPPER_REGISTRY
from .sem_seg_mapper import SemSegDatasetMapper, read_sem_seg, swap_mirrored_classes

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
    def __init__(
        self,
        is_train: bool = True,
        *,
        augmentations: List[T.Augmentation],
        image_format: str,
        clip_length: int,
        frame_stride: int = 1,
        num_classes: int,
        ignore_label: int = 255,
        flip_class_map: Optional[Sequence[int]] = None,
    ):
        """
        Args:
            is_train: kept for the mapper interface (train and test differ by ``augmentations``).
            augmentations: applied to the annotated frame, then replayed on the others.
            image_format: the format of ``detection_utils.read_image``.
            clip_length: T, odd.
            frame_stride: source-video frames between consecutive clip frames.
            num_classes, ignore_label: the values a label map may hold (see ``read_sem_seg``).
            flip_class_map: class id -> its id in a mirrored image; None when mirroring changes no class.
        """
        if clip_length < 1 or clip_length % 2 == 0:
            raise ValueError(f"INPUT.CLIP.LENGTH must be odd and positive (annotated frame in the middle), got {clip_length}")
        if frame_stride < 1:
            raise ValueError(f"INPUT.CLIP.FRAME_STRIDE must be >= 1, got {frame_stride}")
        super().__init__(
            is_train,
            augmentations=augmentations,
            image_format=image_format,
            num_classes=num_classes,
            ignore_label=ignore_label,
            flip_class_map=flip_class_map,
        )
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
        dataset_dict.setdefault("height", frames[center].shape[0])
        dataset_dict.setdefault("width", frames[center].shape[1])

        sem_seg = None
        if "sem_seg_file_name" in dataset_dict:
            label_file = dataset_dict.pop("sem_seg_file_name")
            sem_seg = read_sem_seg(label_file, frames[center], self.num_classes, self.ignore_label)
        aug_input = T.AugInput(frames[center], sem_seg=sem_seg)
        transforms = self.augmentations(aug_input)
        frames = [aug_input.image if t == center else transforms.apply_image(f) for t, f in enumerate(frames)]

        dataset_dict["image"] = torch.stack(
            [torch.as_tensor(np.ascontiguousarray(f.transpose(2, 0, 1))) for f in frames]
        )
        if aug_input.sem_seg is not None:
            sem_seg = swap_mirrored_classes(aug_input.sem_seg, transforms, self.flip_class_map)
            dataset_dict["sem_seg"] = torch.as_tensor(sem_seg.astype("long"))
        dataset_dict["clip_file_names"] = files
        return dataset_dict
