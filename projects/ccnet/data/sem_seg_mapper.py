"""The "SemSegDatasetMapper": one image and its label map, randomly scaled, cropped and mirrored.

Input: a Detectron2 semantic-segmentation dataset dict (``file_name``, ``sem_seg_file_name``).
Output, for :class:`ccnet.modeling.meta_arch.CCNetSemanticSegmentor`::

    image      uint8 tensor (C, H, W) in INPUT.FORMAT
    sem_seg    long tensor (H, W): class ids, IGNORE_VALUE elsewhere (when the dict has a label)
    height, width  the original size (the model's output resolution)

Training augmentation: ResizeShortestEdge (INPUT.MIN_SIZE_TRAIN, MAX_SIZE_TRAIN,
MIN_SIZE_TRAIN_SAMPLING: the random scale), RandomCrop_CategoryAreaConstraint (INPUT.CROP.*),
RandomFlip (INPUT.RANDOM_FLIP). Testing: ResizeShortestEdge (INPUT.MIN_SIZE_TEST, 0 = none).
Mirroring also swaps the classes given by the dataset's ``flip_class_map`` metadata (e.g. LIP's
left and right arm).
"""
import copy
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from detectron2.config import configurable
from detectron2.data import MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from .mappers import MAPPER_REGISTRY

__all__ = [
    "SemSegDatasetMapper",
    "build_sem_seg_augmentations",
    "check_sem_seg",
    "image_tensor",
    "read_sem_seg",
    "swap_mirrored_classes",
    "training_flip_class_map",
]


def build_sem_seg_augmentations(cfg, is_train: bool) -> List[T.Augmentation]:
    """Detectron2's resize (+ flip in training) with the semantic crop in between."""
    augmentations = utils.build_augmentation(cfg, is_train)
    if is_train and cfg.INPUT.CROP.ENABLED:
        crop = T.RandomCrop_CategoryAreaConstraint(
            cfg.INPUT.CROP.TYPE,
            cfg.INPUT.CROP.SIZE,
            cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA,
            cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE,
        )
        augmentations.insert(1, crop)
    return augmentations


def check_sem_seg(label: np.ndarray, file_name: str, image_size: Tuple[int, int], num_classes: int, ignore_label: int) -> None:
    """Check a label map (H, W) of class ids read from ``file_name`` against its image's (H, W).

    Raises:
        ValueError: naming ``file_name``, when the map is not single-channel, its size differs
            from the image's, or a value is neither a class in [0, num_classes) nor ``ignore_label``.
    """
    if label.ndim != 2:
        raise ValueError(f"label map {file_name}: expected one channel of class ids, got shape {label.shape}")
    if label.shape != tuple(image_size):
        raise ValueError(
            f"label map {file_name} is {label.shape[1]}x{label.shape[0]} (WxH) but its image is "
            f"{image_size[1]}x{image_size[0]}"
        )
    outside = (label < 0) | ((label >= num_classes) & (label != ignore_label))
    if outside.any():
        values = np.unique(label[outside])
        raise ValueError(
            f"label map {file_name} has values {values[:10].tolist()} outside the {num_classes} classes "
            f"0..{num_classes - 1} and the ignore value {ignore_label}"
        )


def read_sem_seg(file_name: str, image: np.ndarray, num_classes: int, ignore_label: int) -> np.ndarray:
    """Read a label map (H, W) of class ids and check it against its image (H, W, C) with
    :func:`check_sem_seg`. Palette PNGs give their indices (not colours)."""
    label = utils.read_image(file_name)
    check_sem_seg(label, file_name, image.shape[:2], num_classes, ignore_label)
    return label


def training_flip_class_map(cfg) -> Optional[Sequence[int]]:
    """The ``flip_class_map`` metadata of the first training dataset (``DATASETS.TRAIN[0]``).

    Class c of an image is class ``flip_class_map[c]`` of its mirror image (e.g. LIP's left and
    right arm).  None when there is no training dataset or its metadata has no such map.
    """
    if not cfg.DATASETS.TRAIN:
        return None
    return MetadataCatalog.get(cfg.DATASETS.TRAIN[0]).get("flip_class_map", None)


def image_tensor(image: np.ndarray) -> torch.Tensor:
    """The (C, H, W) tensor of an (H, W, C) image array, same dtype (uint8 from ``read_image``)."""
    return torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))


def swap_mirrored_classes(
    sem_seg: np.ndarray, transforms: T.TransformList, flip_class_map: Optional[Sequence[int]]
) -> np.ndarray:
    """Relabel ``sem_seg`` after an odd number of horizontal flips: class c -> flip_class_map[c]."""
    flips = sum(isinstance(t, T.HFlipTransform) for t in transforms.transforms)
    if flip_class_map is None or flips % 2 == 0:
        return sem_seg
    lookup = np.arange(max(int(sem_seg.max()) + 1, len(flip_class_map)))
    lookup[: len(flip_class_map)] = flip_class_map
    return lookup[sem_seg]


@MAPPER_REGISTRY.register()
class SemSegDatasetMapper:
    """Maps a semantic-segmentation dataset dict to the model's input (see the module doc)."""

    @configurable
    def __init__(
        self,
        is_train: bool = True,
        *,
        augmentations: List[T.Augmentation],
        image_format: str,
        num_classes: int,
        ignore_label: int = 255,
        flip_class_map: Optional[Sequence[int]] = None,
    ):
        """
        Args:
            augmentations: applied to the image and its label map together.
            image_format: the format of ``detection_utils.read_image``.
            num_classes, ignore_label: the label values allowed (see :func:`read_sem_seg`).
            flip_class_map: class id -> its id in a mirrored image; None when mirroring changes no class.
        """
        self.is_train = is_train
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = image_format
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        self.flip_class_map = flip_class_map

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        return {
            "is_train": is_train,
            "augmentations": build_sem_seg_augmentations(cfg, is_train),
            "image_format": cfg.INPUT.FORMAT,
            "num_classes": cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            "ignore_label": cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE,
            "flip_class_map": training_flip_class_map(cfg),
        }

    def augment(self, dataset_dict: Dict, image: np.ndarray) -> Tuple[np.ndarray, T.TransformList]:
        """Augment ``image`` (H, W, C), the image of ``dataset_dict``, together with its label map.

        Checks the image's size against the dict's ``height`` and ``width`` (sets them when
        missing); reads and checks the label map (``sem_seg_file_name``, popped) when there is
        one, and sets ``dataset_dict["sem_seg"]``: the augmented label, a long tensor (H', W'),
        classes swapped after mirroring.

        Returns:
            The augmented image (H', W', C) and the transforms that made it.
        """
        utils.check_image_size(dataset_dict, image)
        sem_seg = None
        if "sem_seg_file_name" in dataset_dict:
            sem_seg = read_sem_seg(dataset_dict.pop("sem_seg_file_name"), image, self.num_classes, self.ignore_label)
        aug_input = T.AugInput(image, sem_seg=sem_seg)
        transforms = self.augmentations(aug_input)
        if aug_input.sem_seg is not None:
            sem_seg = swap_mirrored_classes(aug_input.sem_seg, transforms, self.flip_class_map)
            dataset_dict["sem_seg"] = torch.as_tensor(sem_seg.astype("long"))
        return aug_input.image, transforms

    def __call__(self, dataset_dict: Dict) -> Dict:
        dataset_dict = copy.deepcopy(dataset_dict)
        image = utils.read_image(dataset_dict["file_name"], format=self.image_format)
        image, _ = self.augment(dataset_dict, image)
        dataset_dict["image"] = image_tensor(image)
        return dataset_dict
