"""Mask R-CNN R-50-FPN whose backbone can hold context blocks (RCCA / non-local).

Detectron2's ``common/models/mask_rcnn_fpn.py``, with the project's ``ContextResNet`` and
``ContextFPN`` in place of ``ResNet`` and ``FPN``. With the two ``contexts`` dicts empty it is
Detectron2's network, with the same parameter names. Add blocks with

    model.backbone.bottom_up.contexts = context_blocks({"res4.-2": rcca_block(1024, 8)})  # after res4.4 of an R-50
    model.backbone.contexts = context_blocks({"res5": rcca_block(256, 4)})  # on the res5 FPN lateral

(``context_blocks``, ``rcca_block`` from ``../context.py``; keys "<stage>.<block index>", negative from the end).
"""
# The project first: importing it makes Detectron2 work with today's libraries (ccnet.compat).
from ccnet.modeling.backbone import ContextFPN, ContextResNet

from detectron2 import model_zoo

model = model_zoo.get_config("common/models/mask_rcnn_fpn.py").model
model.backbone._target_ = ContextFPN
model.backbone.contexts = {}
model.backbone.bottom_up._target_ = ContextResNet
model.backbone.bottom_up.contexts = {}
