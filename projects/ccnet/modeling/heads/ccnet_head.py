"""The CCNet semantic segmentation head (Huang et al., ICCV 2019 / TPAMI)."""
import functools
from typing import Dict, Optional, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.layers import Conv2d, ShapeSpec
from detectron2.modeling import SEM_SEG_HEADS_REGISTRY
from detectron2.projects.deeplab.loss import DeepLabCE
from detectron2.utils.events import get_event_storage

from ...layers import ContextModule
from ..context import detectron2_norm
from ..losses import CategoryConsistentLoss, OhemCrossEntropy, cross_entropy
from .fcn_head import FCNHead

__all__ = ["CCNetHead", "upsample_logits"]

LOSS_TYPES = ("cross_entropy", "ohem", "hard_pixel_mining")


def upsample_logits(logits: torch.Tensor, stride: int, size: Tuple[int, int]) -> torch.Tensor:
    """Bilinearly upsample (N, K, h, w) logits by ``stride`` and crop the top-left ``size``.

    This is Detectron2's convention (``scale_factor=common_stride``) for inputs whose size is
    not a multiple of the stride: the feature map covers ceil(H / stride) cells.
    """
    height, width = size
    if logits.shape[-2] * stride < height or logits.shape[-1] * stride < width:
        raise ValueError(f"logits {tuple(logits.shape)} at stride {stride} do not cover {height}x{width}")
    if stride != 1:
        logits = F.interpolate(logits, scale_factor=stride, mode="bilinear", align_corners=False)
    return logits[..., :height, :width]


def _feature_shape(input_shape: Dict[str, ShapeSpec], name: str) -> ShapeSpec:
    if name not in input_shape:
        raise ValueError(f"CCNetHead: feature '{name}' is not among the backbone outputs {sorted(input_shape)}")
    return input_shape[name]


def _build_segmentation_loss(loss_type: str, ignore_value: int, ohem: dict):
    """A callable (logits (N, K, H, W), targets (N, H, W)) -> scalar loss."""
    if loss_type == "cross_entropy":
        return functools.partial(cross_entropy, ignore_index=ignore_value)
    if loss_type == "ohem":
        return OhemCrossEntropy(ignore_index=ignore_value, **ohem)
    if loss_type == "hard_pixel_mining":
        return DeepLabCE(ignore_label=ignore_value, top_k_percent_pixels=0.2)
    raise ValueError(f"MODEL.SEM_SEG_HEAD.LOSS_TYPE must be one of {LOSS_TYPES}, got {loss_type!r}")


@SEM_SEG_HEADS_REGISTRY.register()
class CCNetHead(nn.Module):
    """
    The CCNet head on one backbone feature x (N, C, H, W), e.g. res5 of a dilated ResNet:

    * ``context``: a :class:`ccnet.layers.ContextModule` (3x3 conv + norm to ``inter_channels``,
      the attention named by ``context``, 3x3 conv + norm): RCCA (criss-cross attention applied
      R times with shared weights), a non-local block or nothing;
    * ``classifier``: concatenation [x, context(x)] (N, C + inter, H, W), 3x3 conv + norm,
      dropout, 1x1 conv to K classes;
    * ``aux_head`` (optional): the same FCN classifier on another feature (res4), trained with
      plain cross-entropy and ``aux_loss_weight``;
    * ``ccl_embedding`` (optional): 1x1 conv of the context output to ``ccl_dim`` channels,
      trained with the category consistent loss against the labels resized (nearest) to H x W.

    Channel counts come from ``input_shape``, so any backbone works.

    forward(features, targets) with targets (N, H_in, W_in):
        training: (None, {"loss_sem_seg", ["loss_sem_seg_aux"], ["loss_ccl"]});
        inference: ((N, K, H * stride, W * stride) logits, {}).
    """

    # The context module attends over images (N, C, H, W); CCNetVideoHead: over clips.
    context_over_clips = False

    @configurable
    def __init__(
        self,
        input_shape: Dict[str, ShapeSpec],
        *,
        in_feature: str,
        num_classes: int,
        context: str = "RCCA",
        recurrence: int = 2,
        inter_channels: int = 512,
        context_norm="BN",
        gamma_init: float = 0.0,
        convs_dim: int = 512,
        norm="BN",
        dropout: float = 0.1,
        loss_type: str = "cross_entropy",
        loss_weight: float = 1.0,
        ignore_value: int = 255,
        ohem: Optional[dict] = None,
        aux_in_feature: Optional[str] = "res4",
        aux_convs_dim: int = 512,
        aux_loss_weight: float = 0.4,
        ccl: Optional[dict] = None,
        ccl_dim: int = 16,
        ccl_warmup_iters: int = 0,
    ):
        """
        Args:
            input_shape: shapes of the backbone features; must contain ``in_feature`` (and
                ``aux_in_feature`` when given).
            context: the attention of the context module, a name of
                :data:`ccnet.layers.ATTENTIONS` ("RCCA", "NL" or "none").
            recurrence: R, how many times the criss-cross attention is applied ("RCCA" only).
            inter_channels: channels of the context module.
            context_norm: norm of the context module's convolutions; ``norm``: of the
                classifiers' (:func:`detectron2.layers.get_norm` names).
            gamma_init: initial value of the residual scale ``gamma`` of the context module's
                attention (0: the block starts as the identity; "RCCA" only).
            loss_type: "cross_entropy", "ohem" (with ``ohem`` = dict(threshold, min_kept,
                reference_pixels)) or "hard_pixel_mining" (DeepLab's top 20%).
            aux_in_feature: feature of the auxiliary FCN head; None or "" for none.
            ccl: None for no category consistent loss, else the keyword arguments of
                :class:`CategoryConsistentLoss` except ``ignore_index``.
            ccl_warmup_iters: the CCL weight ramps linearly to 1 over this many training
                iterations N: (iteration + 1) / N, 1/N at the first (the iteration of
                Detectron2's event storage).
        """
        super().__init__()
        if aux_in_feature:
            _feature_shape(input_shape, aux_in_feature)
        in_channels = _feature_shape(input_shape, in_feature).channels
        self.in_feature = in_feature
        self.common_stride = input_shape[in_feature].stride
        self.ignore_value = ignore_value
        self.loss_weight = loss_weight

        self.context = ContextModule(
            in_channels,
            inter_channels,
            attention=context,
            recurrence=recurrence,
            norm=detectron2_norm(context_norm),
            clips=self.context_over_clips,
            gamma_init=gamma_init,
        )
        self.classifier = FCNHead(in_channels + inter_channels, convs_dim, num_classes, norm=norm, dropout=dropout)
        self.seg_loss = _build_segmentation_loss(loss_type, ignore_value, ohem or {})

        self.aux_in_feature = aux_in_feature or None
        if self.aux_in_feature:
            aux_shape = input_shape[self.aux_in_feature]
            self.aux_stride = aux_shape.stride
            self.aux_loss_weight = aux_loss_weight
            self.aux_head = FCNHead(aux_shape.channels, aux_convs_dim, num_classes, norm=norm, dropout=dropout)

        self.ccl_loss = None
        if ccl is not None:
            self.ccl_embedding = Conv2d(inter_channels, ccl_dim, kernel_size=1)
            self.ccl_loss = CategoryConsistentLoss(ignore_index=ignore_value, **ccl)
            self.ccl_warmup_iters = ccl_warmup_iters

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        head, ccnet, context = cfg.MODEL.SEM_SEG_HEAD, cfg.MODEL.CCNET, cfg.MODEL.CONTEXT
        if len(head.IN_FEATURES) != 1:
            raise ValueError(f"CCNetHead takes one feature: MODEL.SEM_SEG_HEAD.IN_FEATURES={head.IN_FEATURES}")
        ccl = None
        if ccnet.CCL_ENABLED:
            ccl = dict(
                delta_v=ccnet.CCL_DELTA_V,
                delta_d=ccnet.CCL_DELTA_D,
                alpha=ccnet.CCL_ALPHA,
                beta=ccnet.CCL_BETA,
                gamma=ccnet.CCL_GAMMA,
            )
        return dict(
            input_shape=input_shape,
            in_feature=head.IN_FEATURES[0],
            num_classes=head.NUM_CLASSES,
            context=context.NAME,
            recurrence=context.RECURRENCE,
            inter_channels=_feature_shape(input_shape, head.IN_FEATURES[0]).channels // context.REDUCTION,
            context_norm=context.NORM,
            gamma_init=context.GAMMA_INIT,
            convs_dim=head.CONVS_DIM,
            norm=head.NORM,
            dropout=ccnet.DROPOUT,
            loss_type=head.LOSS_TYPE,
            loss_weight=head.LOSS_WEIGHT,
            ignore_value=head.IGNORE_VALUE,
            ohem=dict(
                threshold=ccnet.OHEM_THRESHOLD,
                min_kept=ccnet.OHEM_MIN_KEPT,
                reference_pixels=ccnet.OHEM_REFERENCE_PIXELS,
            ),
            aux_in_feature=ccnet.AUX_IN_FEATURE,
            aux_convs_dim=ccnet.AUX_CONVS_DIM,
            aux_loss_weight=ccnet.AUX_LOSS_WEIGHT,
            ccl=ccl,
            ccl_dim=ccnet.CCL_DIM,
            ccl_warmup_iters=ccnet.CCL_WARMUP_ITERS,
        )

    def forward(self, features: Dict[str, torch.Tensor], targets: Optional[torch.Tensor] = None):
        logits, context = self.layers(features)
        return self.outputs(logits, context, features, targets)

    def layers(self, features: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Returns (logits (N, K, H, W), context output (N, inter_channels, H, W))."""
        context = self.context(features[self.in_feature])
        return self.classify(features, context), context

    def classify(self, features: Dict[str, torch.Tensor], context: torch.Tensor) -> torch.Tensor:
        """The classifier on [x, context]: (N, C + inter, H, W) -> logits (N, K, H, W)."""
        return self.classifier(torch.cat([features[self.in_feature], context], dim=1))

    def outputs(self, logits, context, features, targets):
        """What forward returns for these logits (N, K, H, W): the losses in training, the
        logits upsampled by the stride at inference (see the class docstring)."""
        if self.training:
            return None, self.losses(logits, context, features, targets)
        size = (logits.shape[-2] * self.common_stride, logits.shape[-1] * self.common_stride)
        return upsample_logits(logits, self.common_stride, size), {}

    def _ccl_weight(self) -> float:
        """The CCL ramp: (iteration + 1) / CCL_WARMUP_ITERS, at most 1 (1 outside a trainer)."""
        if not self.ccl_warmup_iters:
            return 1.0
        try:
            iteration = get_event_storage().iter
        except AssertionError:  # no EventStorage: not inside a training loop
            return 1.0
        return min(1.0, (iteration + 1) / self.ccl_warmup_iters)

    def losses(self, logits, context, features, targets) -> Dict[str, torch.Tensor]:
        size = targets.shape[-2:]
        logits = upsample_logits(logits.float(), self.common_stride, size)
        losses = {"loss_sem_seg": self.seg_loss(logits, targets) * self.loss_weight}
        if self.aux_in_feature:
            aux_logits = self.aux_head(features[self.aux_in_feature])
            aux_logits = upsample_logits(aux_logits.float(), self.aux_stride, size)
            aux_loss = cross_entropy(aux_logits, targets, ignore_index=self.ignore_value)
            losses["loss_sem_seg_aux"] = aux_loss * self.aux_loss_weight
        if self.ccl_loss is not None:
            labels = F.interpolate(targets[:, None].float(), size=context.shape[-2:], mode="nearest")
            loss = self.ccl_loss(self.ccl_embedding(context), labels[:, 0].long())
            losses["loss_ccl"] = loss * self._ccl_weight()
        return losses
