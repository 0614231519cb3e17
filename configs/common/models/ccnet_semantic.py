"""CCNet for semantic segmentation: the model of ``../../Base-CCNet-Semantic.yaml``.

Dilated ResNet-101 with the deep stem at output stride 8 (Detectron2 DeepLab's backbone), the
CCNet head on res5 (RCCA 2048 -> 512 with R=2, concatenation, 3x3 conv + norm, dropout 0.1,
classifier) and the auxiliary FCN head on res4 (loss weight 0.4). Every argument is documented
in ``ccnet.modeling.heads.CCNetHead`` and ``ccnet.modeling.meta_arch.CCNetSemanticSegmentor``.
Set at least ``model.sem_seg_head.num_classes``.
"""
# The project first: importing it makes Detectron2 work with today's libraries (ccnet.compat).
from ccnet.modeling.backbone import dilated_resnet
from ccnet.modeling.heads import CCNetHead
from ccnet.modeling.meta_arch import CCNetSemanticSegmentor

from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec

model = L(CCNetSemanticSegmentor)(
    backbone=L(dilated_resnet)(
        depth=101,
        stem_type="deeplab",
        stem_out_channels=128,
        norm="SyncBN",
        stride_in_1x1=False,
        res4_dilation=2,
        res5_dilation=4,
        res5_multi_grid=[1, 1, 1],
        out_features=["res4", "res5"],
        freeze_at=0,
    ),
    sem_seg_head=L(CCNetHead)(
        # The backbone's outputs (channels, stride) for an R-101 at output stride 8.
        input_shape={
            "res4": L(ShapeSpec)(channels=1024, stride=8),
            "res5": L(ShapeSpec)(channels=2048, stride=8),
        },
        in_feature="res5",
        num_classes=None,
        context="RCCA",  # "NL" (non-local block) or "none" (FCN baseline)
        recurrence=2,
        inter_channels=512,
        context_norm="SyncBN",
        gamma_init=0.0,
        convs_dim=512,
        norm="SyncBN",
        dropout=0.1,
        loss_type="cross_entropy",  # or "ohem" with ohem=dict(threshold, min_kept, reference_pixels)
        loss_weight=1.0,
        ignore_value=255,
        ohem=None,
        aux_in_feature="res4",
        aux_convs_dim=512,
        aux_loss_weight=0.4,
        ccl=None,  # dict(delta_v, delta_d, alpha, beta, gamma): the category consistent loss
        ccl_dim=16,
    ),
    pixel_mean=[123.675, 116.280, 103.530],
    pixel_std=[58.395, 57.120, 57.375],
    sliding_window=None,  # (h, w): sliding-window inference; None: whole image
    window_overlap=1.0 / 3.0,
    test_short_edge_sizes=[],
    test_max_size=float("inf"),
    test_flip=False,
    flip_class_map=None,
)
