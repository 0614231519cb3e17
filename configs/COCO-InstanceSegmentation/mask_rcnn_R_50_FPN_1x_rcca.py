"""Mask R-CNN R-50-FPN + one RCCA block (R=2) before the last block of res4, COCO 1x.

The LazyConfig twin of ``mask_rcnn_R_50_FPN_1x_rcca.yaml`` (same network and parameter names):
Detectron2's ``COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.py`` (its data, SGD, 1x schedule,
ImageNet weights) with the block. Train with
``tools/lazyconfig_train_net.py --config-file <this file> [key=value ...]``.
"""
# The project first (through ../common): importing it makes Detectron2 work with today's libraries.
from ..common.models.mask_rcnn_context_fpn import model
from ..common.context import context_blocks, rcca_block

from ccnet.compat import has_compiled_ops

from detectron2 import model_zoo
from detectron2.config import LazyCall as L

_baseline = model_zoo.get_config("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.py")
dataloader = _baseline.dataloader
optimizer = _baseline.optimizer
lr_multiplier = _baseline.lr_multiplier
train = _baseline.train  # init_checkpoint: detectron2://ImageNetPretrained/MSRA/R-50.pkl
# Detectron2's fast C++ COCOeval needs its compiled ops; pycocotools computes the same numbers.
dataloader.evaluator.use_fast_impl = L(has_compiled_ops)()

model.backbone.bottom_up.freeze_at = 2
# After block res4.4 of an R-50 (res4.21 of an R-101): res4 has 1024 channels, RCCA works on 1024 // 8.
model.backbone.bottom_up.contexts = context_blocks({"res4.-2": rcca_block(1024, reduction=8)})
