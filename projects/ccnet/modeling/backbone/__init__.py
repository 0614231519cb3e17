"""Backbones with residual context blocks (RCCA / non-local), registered in BACKBONE_REGISTRY:
``build_context_resnet_backbone`` and ``build_context_resnet_fpn_backbone``."""
from .deeplab import dilated_resnet
from .fpn import ContextFPN, build_context_resnet_fpn_backbone
from .resnet import ContextResNet, build_context_resnet_backbone, context_block_builder

__all__ = [
    "ContextFPN",
    "ContextResNet",
    "build_context_resnet_backbone",
    "build_context_resnet_fpn_backbone",
    "context_block_builder",
    "dilated_resnet",
]
