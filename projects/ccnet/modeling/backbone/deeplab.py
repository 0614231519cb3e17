"""Detectron2 DeepLab's dilated ResNet built from keyword arguments, for LazyConfigs."""
from typing import Sequence

from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone.resnet import ResNet
from detectron2.projects.deeplab import add_deeplab_config, build_resnet_deeplab_backbone

__all__ = ["dilated_resnet"]


def dilated_resnet(
    *,
    depth: int = 101,
    stem_type: str = "deeplab",
    stem_out_channels: int = 128,
    res2_out_channels: int = 256,
    norm: str = "BN",
    stride_in_1x1: bool = False,
    res4_dilation: int = 2,
    res5_dilation: int = 4,
    res5_multi_grid: Sequence[int] = (1, 1, 1),
    out_features: Sequence[str] = ("res4", "res5"),
    freeze_at: int = 0,
    in_channels: int = 3,
) -> ResNet:
    """The ResNet of ``MODEL.BACKBONE.NAME: build_resnet_deeplab_backbone`` (Detectron2's DeepLab
    project), with the ``MODEL.RESNETS`` / ``MODEL.BACKBONE.FREEZE_AT`` keys as arguments.

    It calls that builder with a config holding exactly these values, so a LazyConfig gets the
    network (and parameter names) of the YAML configs. Defaults: the CCNet semantic backbone,
    ResNet-101 with the deep stem at output stride 8 (res4 dilation 2, res5 dilation 4).
    Forward: (N, in_channels, H, W) -> {"res4": (N, 1024, H/8, W/8), "res5": (N, 2048, H/8, W/8)}
    for an R-101 with these defaults.
    """
    cfg = get_cfg()
    add_deeplab_config(cfg)
    resnets = cfg.MODEL.RESNETS
    resnets.DEPTH = depth
    resnets.STEM_TYPE = stem_type
    resnets.STEM_OUT_CHANNELS = stem_out_channels
    resnets.RES2_OUT_CHANNELS = res2_out_channels
    resnets.NORM = norm
    resnets.STRIDE_IN_1X1 = stride_in_1x1
    resnets.RES4_DILATION = res4_dilation
    resnets.RES5_DILATION = res5_dilation
    resnets.RES5_MULTI_GRID = list(res5_multi_grid)
    resnets.OUT_FEATURES = list(out_features)
    cfg.MODEL.BACKBONE.FREEZE_AT = freeze_at
    return build_resnet_deeplab_backbone(cfg, ShapeSpec(channels=in_channels))
