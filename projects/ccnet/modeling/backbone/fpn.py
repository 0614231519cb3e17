"""FPN over the context ResNet, with residual context blocks on chosen lateral features."""
from typing import Dict

import torch.nn.functional as F
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool
from torch import nn

from .resnet import build_context_resnet_backbone, context_block_builder

__all__ = ["ContextFPN", "build_context_resnet_fpn_backbone"]


class ContextFPN(FPN):
    """
    Detectron2's :class:`FPN` with a residual context block on the lateral (1x1 conv) output of
    some input features, before the top-down pass: a block on the coarsest lateral ("res5")
    spreads image-wide context into every pyramid level.

    Parameter names are Detectron2's (``fpn_lateral5.weight``, ``bottom_up.res2.0...``); the
    new blocks live in ``lateral_contexts.<in_feature>``.
    """

    def __init__(self, *, contexts: Dict[str, nn.Module], **fpn_kwargs):
        """
        Args:
            contexts: {input feature name (e.g. "res5"): module mapping (N, OUT_CHANNELS, H, W)
                to the same shape}, applied to that feature's lateral output.
            fpn_kwargs: arguments of :class:`FPN`.
        """
        super().__init__(**fpn_kwargs)
        unknown = sorted(set(contexts) - set(self.in_features))
        if unknown:
            raise ValueError(
                f"FPN context blocks on {unknown}: not FPN input features (MODEL.FPN.IN_FEATURES={list(self.in_features)})"
            )
        self.lateral_contexts = nn.ModuleDict(contexts)

    def forward(self, x):
        """
        Args:
            x: (N, C, H, W) images, H and W multiples of ``self.size_divisibility``.
        Returns:
            dict[str -> Tensor]: "p2", "p3", ... (N, OUT_CHANNELS, H / stride, W / stride),
            high to low resolution.
        """
        bottom_up_features = self.bottom_up(x)
        results = []
        top_down = None
        # lateral_convs / output_convs are in top-down order (coarsest first).
        for feature_name, lateral_conv, output_conv in zip(
            self.in_features[::-1], self.lateral_convs, self.output_convs
        ):
            features = lateral_conv(bottom_up_features[feature_name])
            # (TorchScript indexes a ModuleDict by literals only: enumerate it instead.)
            for context_name, context in self.lateral_contexts.items():
                if context_name == feature_name:
                    features = context(features)
            if top_down is not None:
                features = features + F.interpolate(top_down, scale_factor=2.0, mode="nearest")
                if self._fuse_type == "avg":
                    features = features / 2
            top_down = features
            results.insert(0, output_conv(features))

        if self.top_block is not None:
            if self.top_block.in_feature in bottom_up_features:
                top_block_in_feature = bottom_up_features[self.top_block.in_feature]
            else:
                top_block_in_feature = results[self._out_features.index(self.top_block.in_feature)]
            results.extend(self.top_block(top_block_in_feature))
        return dict(zip(self._out_features, results))


@BACKBONE_REGISTRY.register()
def build_context_resnet_fpn_backbone(cfg, input_shape: ShapeSpec) -> ContextFPN:
    """Like Detectron2's ``build_resnet_fpn_backbone`` (same keys, P2-P6), over
    :func:`build_context_resnet_backbone`, plus ``MODEL.CONTEXT`` blocks on the laterals of
    ``MODEL.FPN.CONTEXT_IN_FEATURES``."""
    make_block = context_block_builder(cfg)
    out_channels = cfg.MODEL.FPN.OUT_CHANNELS
    return ContextFPN(
        bottom_up=build_context_resnet_backbone(cfg, input_shape),
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=out_channels,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelMaxPool(),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
        contexts={name: make_block(out_channels) for name in cfg.MODEL.FPN.CONTEXT_IN_FEATURES},
    )
