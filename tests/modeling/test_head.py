"""The CCNet semantic head: structure from config, channel-agnostic, losses and their weights."""
import pytest
import torch
from torch.nn import functional as F

from ccnet.layers import ContextModule, CrissCrossAttention, NonLocalBlock
from ccnet.modeling import category_consistent_loss
from ccnet.modeling.heads import CCNetHead
from ccnet.engine.cli import build_config
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_sem_seg_head

NUM_CLASSES = 4


def _shapes(res4=12, res5=20, stride=8):
    return {"res4": ShapeSpec(channels=res4, stride=stride), "res5": ShapeSpec(channels=res5, stride=stride)}


def _head(stride=8, **kwargs):
    args = dict(in_feature="res5", num_classes=NUM_CLASSES, inter_channels=6, convs_dim=8, aux_convs_dim=8, dropout=0.0)
    args.update(kwargs)
    torch.manual_seed(0)
    return CCNetHead(_shapes(stride=stride), **args)


def _features(n=2, h=5, w=6):
    torch.manual_seed(1)
    return {"res4": torch.randn(n, 12, h, w), "res5": torch.randn(n, 20, h, w)}


def _targets(n=2, h=40, w=48):
    torch.manual_seed(2)
    targets = torch.randint(0, NUM_CLASSES, (n, h, w))
    targets[:, :3] = 255
    return targets


def test_head_from_config_follows_the_keys():
    cfg = build_config(
        "",
        [
            "MODEL.SEM_SEG_HEAD.NAME", "CCNetHead", "MODEL.SEM_SEG_HEAD.IN_FEATURES", "['res5']",
            "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "7", "MODEL.SEM_SEG_HEAD.CONVS_DIM", "16", "MODEL.SEM_SEG_HEAD.NORM", "BN",
            "MODEL.CONTEXT.RECURRENCE", "3", "MODEL.CONTEXT.REDUCTION", "2", "MODEL.CONTEXT.NORM", "BN",
            "MODEL.CCNET.AUX_CONVS_DIM", "5",
            "MODEL.CCNET.CCL_ENABLED", "True", "MODEL.CCNET.CCL_DIM", "3", "MODEL.CCNET.DROPOUT", "0.25",
        ],
    )  # fmt: skip
    head = build_sem_seg_head(cfg, _shapes())
    assert isinstance(head.context, ContextModule) and isinstance(head.context.attention, CrissCrossAttention)
    assert head.context.recurrence == 3
    assert head.context.reduce.weight.shape == (10, 20, 3, 3)  # 2048 -> 512 in the paper; 20 -> 10 here
    assert isinstance(head.context.reduce.norm, torch.nn.BatchNorm2d)  # MODEL.CONTEXT.NORM
    assert head.classifier.conv.weight.shape == (16, 20 + 10, 3, 3)  # concatenation with the input
    assert head.classifier.predictor.weight.shape == (7, 16, 1, 1)
    assert head.classifier.dropout.p == 0.25
    assert head.aux_head.conv.weight.shape == (5, 12, 3, 3)  # on res4
    assert head.aux_loss_weight == pytest.approx(0.4)  # a config float read back
    assert head.ccl_embedding.weight.shape == (3, 10, 1, 1)


def test_context_variants():
    nl = _head(context="NL").context
    assert isinstance(nl.attention, NonLocalBlock)
    plain = _head(context="none").context
    assert isinstance(plain.attention, torch.nn.Identity)
    assert not any("attention" in name for name, _ in plain.named_parameters())
    with pytest.raises(ValueError, match="unknown attention 'ASPP'"):
        _head(context="ASPP")


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="LOSS_TYPE"):
        _head(loss_type="focal")
    with pytest.raises(ValueError, match="'res3'"):
        _head(aux_in_feature="res3")
    cfg = build_config("", ["MODEL.SEM_SEG_HEAD.NAME", "CCNetHead", "MODEL.SEM_SEG_HEAD.IN_FEATURES", "['res4', 'res5']"])
    with pytest.raises(ValueError, match="IN_FEATURES"):
        build_sem_seg_head(cfg, _shapes())


@pytest.mark.parametrize("context", ["RCCA", "NL", "none"])
def test_inference_returns_logits_at_input_resolution(context):
    head = _head(context=context).eval()
    logits, losses = head(_features(h=5, w=6))
    assert logits.shape == (2, NUM_CLASSES, 40, 48) and losses == {}


def test_training_losses_and_gradients():
    head = _head(ccl={}).train()
    _, losses = head(_features(), _targets())
    assert set(losses) == {"loss_sem_seg", "loss_sem_seg_aux", "loss_ccl"}
    sum(losses.values()).backward()
    assert head.context.attention.gamma.grad is not None and head.context.attention.gamma.grad.abs() > 0
    assert head.aux_head.predictor.weight.grad.abs().sum() > 0


def test_auxiliary_head_can_be_switched_off_and_its_weight_applies():
    features, targets = _features(), _targets()
    assert set(_head(aux_in_feature="")(features, targets)[1]) == {"loss_sem_seg"}
    full = _head(aux_loss_weight=1.0)(features, targets)[1]["loss_sem_seg_aux"]
    weighted = _head(aux_loss_weight=0.4)(features, targets)[1]["loss_sem_seg_aux"]
    assert weighted.item() == pytest.approx(0.4 * full.item())  # one float32 product apart: 6e-8 < rel 1e-6


def test_main_loss_is_cross_entropy_of_the_upsampled_logits():
    head = _head(stride=1)
    features, targets = _features(h=5, w=6), _targets(h=5, w=6)  # stride 1: no resizing
    loss = head(features, targets)[1]["loss_sem_seg"]
    logits, _ = head.layers(features)  # still in training mode: same batch-norm statistics
    # float32 means over 60 pixels in another order: eps 1.2e-7 x log2(60) = 7e-7.
    assert loss.item() == pytest.approx(F.cross_entropy(logits, targets, ignore_index=255).item(), rel=1e-6)


def test_category_consistent_loss_is_on_the_embedded_context_output():
    head = _head(stride=1, ccl=dict(delta_v=0.1, gamma=0.5))
    features, targets = _features(h=5, w=6), _targets(h=5, w=6)
    loss = head(features, targets)[1]["loss_ccl"]
    embedding = head.ccl_embedding(head.context(features["res5"]))
    expected = category_consistent_loss(embedding, targets, delta_v=0.1, gamma=0.5)
    assert loss.item() == pytest.approx(expected.item())  # the same float32 computation: default rel 1e-6


def test_ohem_loss_type_scales_min_kept_with_the_crop():
    head = _head(loss_type="ohem", ohem=dict(threshold=0.7, min_kept=100000, reference_pixels=769 * 769))
    assert head.seg_loss.batch_min_kept(2 * 40 * 48) == 650  # ceil(100000 * 3840 / 591361)
    assert torch.isfinite(head(_features(), _targets())[1]["loss_sem_seg"])
