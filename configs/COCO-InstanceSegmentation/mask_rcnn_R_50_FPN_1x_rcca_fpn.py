"""Mask R-CNN R-50-FPN + one RCCA block (R=2) on the res5 FPN lateral, COCO 1x.

The LazyConfig twin of ``mask_rcnn_R_50_FPN_1x_rcca_fpn.yaml``: the block runs on the 256-channel
lateral output of res5 before the top-down pass, so every pyramid level gets image-wide context.
"""
from .mask_rcnn_R_50_FPN_1x_rcca import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

from ..common.context import context_blocks, rcca_block

model.backbone.bottom_up.contexts = {}
model.backbone.contexts = context_blocks({"res5": rcca_block(256, reduction=4)})
