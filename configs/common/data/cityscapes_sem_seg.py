"""Cityscapes fine (19 train IDs) for CCNet: the data of
``../../Cityscapes-SemanticSegmentation/Base-CCNet-Cityscapes.yaml``.

Training: images randomly rescaled (short edge 512-1536, long edge at most 3072), a 769x769 crop,
horizontal mirror, 8 per batch. Testing: the full 1024x2048 image. Evaluation: Detectron2's
``SemSegEvaluator`` (mIoU over the 19 classes). Prepare the data as in ``datasets/README.md``.
"""
from omegaconf import OmegaConf

# The project first: importing it makes Detectron2 work with today's libraries (ccnet.compat).
from ccnet.data.sem_seg_mapper import SemSegDatasetMapper

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.data import build_detection_test_loader, build_detection_train_loader, get_detection_dataset_dicts
from detectron2.evaluation import SemSegEvaluator

dataloader = OmegaConf.create()

dataloader.train = L(build_detection_train_loader)(
    dataset=L(get_detection_dataset_dicts)(names="cityscapes_fine_sem_seg_train"),
    mapper=L(SemSegDatasetMapper)(
        is_train=True,
        augmentations=[
            L(T.ResizeShortestEdge)(short_edge_length=(512, 1536), max_size=3072, sample_style="range"),
            L(T.RandomCrop_CategoryAreaConstraint)(
                crop_type="absolute", crop_size=(769, 769), single_category_max_area=1.0, ignored_category=255
            ),
            L(T.RandomFlip)(horizontal=True),
        ],
        image_format="RGB",
        num_classes=19,
        ignore_label=255,
    ),
    total_batch_size=8,
    num_workers=4,
)

dataloader.test = L(build_detection_test_loader)(
    dataset=L(get_detection_dataset_dicts)(names="cityscapes_fine_sem_seg_val", filter_empty=False),
    mapper=L(SemSegDatasetMapper)(
        is_train=False,
        augmentations=[L(T.ResizeShortestEdge)(short_edge_length=1024, max_size=2048)],
        image_format="${...train.mapper.image_format}",
        num_classes="${...train.mapper.num_classes}",
        ignore_label="${...train.mapper.ignore_label}",
    ),
    num_workers=4,
)

dataloader.evaluator = L(SemSegEvaluator)(dataset_name="${..test.dataset.names}", distributed=True)
