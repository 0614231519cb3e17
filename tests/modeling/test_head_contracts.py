"""Contracts of the CCNet head and its FCN classifier that the other head tests leave open.

* every ``MODEL.CONTEXT`` / ``MODEL.SEM_SEG_HEAD`` / ``MODEL.CCNET`` key the head reads reaches
  it when set to a value other than its default (context attention, norms, gamma, loss type,
  OHEM and CCL hyper-parameters, ignore label, auxiliary feature and weight, CCL warm-up);
* the CCL warm-up ramp ``(iteration + 1) / CCL_WARMUP_ITERS`` (at most 1, 1 outside a
  trainer), as a table worked out by hand, and its effect on ``loss_ccl``;
* an ignore label other than 255 is ignored by the main and the auxiliary loss;
* ``upsample_logits`` at stride 2 (a textbook bilinear case);
* ``FCNHead``'s defaults (BN, dropout 0.1) and its predictor's start, normal(0, 0.001) weights
  and zero bias, Detectron2's convention for semantic predictors (DeepLab heads).
"""
import pytest
import torch

from ccnet.engine.cli import build_config
from ccnet.layers import CrissCrossAttention, NonLocalBlock
from ccnet.modeling.heads import CCNetHead, FCNHead, upsample_logits
from ccnet.modeling.losses import OhemCrossEntropy
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_sem_seg_head
from detectron2.utils.events import EventStorage

NUM_CLASSES = 4


def _shapes():
    # 64-channel res5 so that GroupNorm's 32 groups fit the 32 context channels (REDUCTION 2).
    return {
        "res3": ShapeSpec(channels=16, stride=8),
        "res4": ShapeSpec(channels=24, stride=8),
        "res5": ShapeSpec(channels=64, stride=8),
    }


def _cfg(*opts):
    base = [
        "MODEL.SEM_SEG_HEAD.NAME", "CCNetHead", "MODEL.SEM_SEG_HEAD.IN_FEATURES", "['res5']",
        "MODEL.SEM_SEG_HEAD.NUM_CLASSES", str(NUM_CLASSES), "MODEL.SEM_SEG_HEAD.CONVS_DIM", "32",
        "MODEL.CONTEXT.REDUCTION", "2", "MODEL.CCNET.AUX_CONVS_DIM", "32",
    ]  # fmt: skip
    return build_config("", base + list(opts))


def _hand_cross_entropy(logits, targets, ignore):
    """Mean of -log softmax(true class) over the pixels not labelled ``ignore``, by hand."""
    log_p = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    valid = targets != ignore
    true_class = torch.where(valid, targets, torch.zeros_like(targets))
    return -log_p.gather(1, true_class[:, None])[:, 0][valid].mean()


def test_head_from_config_passes_non_default_context_norm_loss_and_ccl_keys():
    cfg = _cfg(
        "MODEL.CONTEXT.NAME", "RCCA", "MODEL.CONTEXT.NORM", "GN", "MODEL.CONTEXT.GAMMA_INIT", "0.5",
        "MODEL.SEM_SEG_HEAD.NORM", "GN", "MODEL.SEM_SEG_HEAD.IGNORE_VALUE", "7",
        "MODEL.SEM_SEG_HEAD.LOSS_TYPE", "ohem",
        "MODEL.CCNET.OHEM_THRESHOLD", "0.5", "MODEL.CCNET.OHEM_MIN_KEPT", "1000",
        "MODEL.CCNET.OHEM_REFERENCE_PIXELS", "10000",
        "MODEL.CCNET.AUX_IN_FEATURE", "res3", "MODEL.CCNET.AUX_LOSS_WEIGHT", "0.25",
        "MODEL.CCNET.CCL_ENABLED", "True", "MODEL.CCNET.CCL_DELTA_V", "0.3", "MODEL.CCNET.CCL_DELTA_D", "1.2",
        "MODEL.CCNET.CCL_ALPHA", "0.7", "MODEL.CCNET.CCL_BETA", "0.8", "MODEL.CCNET.CCL_GAMMA", "0.01",
        "MODEL.CCNET.CCL_WARMUP_ITERS", "10",
    )  # fmt: skip
    head = build_sem_seg_head(cfg, _shapes())
    assert isinstance(head.context.attention, CrissCrossAttention)
    assert head.context.attention.gamma.item() == 0.5  # exact in binary
    assert isinstance(head.context.reduce.norm, torch.nn.GroupNorm)  # MODEL.CONTEXT.NORM
    # MODEL.SEM_SEG_HEAD.NORM reaches both classifiers (GN, the key's Detectron2 default, is not
    # the head's own default, BN).
    assert isinstance(head.classifier.conv.norm, torch.nn.GroupNorm)
    assert isinstance(head.aux_head.conv.norm, torch.nn.GroupNorm)
    assert head.ignore_value == 7
    assert isinstance(head.seg_loss, OhemCrossEntropy)
    ohem = head.seg_loss
    assert (ohem.threshold, ohem.min_kept, ohem.reference_pixels, ohem.ignore_index) == (0.5, 1000, 10000, 7)
    assert head.aux_head.conv.weight.shape == (32, 16, 3, 3)  # on res3 (16 channels), not res4
    assert head.aux_loss_weight == 0.25  # exact in binary
    assert head.ccl_loss.hyperparameters == dict(ignore_index=7, delta_v=0.3, delta_d=1.2, alpha=0.7, beta=0.8, gamma=0.01)
    assert head.ccl_warmup_iters == 10


def test_head_from_config_builds_a_non_local_context_and_no_auxiliary_head():
    head = build_sem_seg_head(_cfg("MODEL.CONTEXT.NAME", "NL", "MODEL.CCNET.AUX_IN_FEATURE", ""), _shapes())
    assert isinstance(head.context.attention, NonLocalBlock)
    assert head.aux_in_feature is None and not hasattr(head, "aux_head")


def _ccl_head(warmup):
    shapes = {"res4": ShapeSpec(channels=12, stride=1), "res5": ShapeSpec(channels=20, stride=1)}
    args = dict(in_feature="res5", num_classes=NUM_CLASSES, inter_channels=6, convs_dim=8, aux_in_feature="", dropout=0.0)
    torch.manual_seed(0)
    return CCNetHead(shapes, ccl={}, ccl_warmup_iters=warmup, **args).double()


@pytest.mark.parametrize("iteration, weight", [(0, 0.25), (1, 0.5), (2, 0.75), (3, 1.0), (4, 1.0), (100, 1.0)])
def test_ccl_weight_ramps_from_one_quarter_to_one_over_four_iterations(iteration, weight):
    head = _ccl_head(warmup=4)
    with EventStorage(start_iter=iteration):
        assert head._ccl_weight() == weight  # k / 4: exact in binary


def test_ccl_weight_is_one_outside_a_trainer_and_without_warmup():
    assert _ccl_head(warmup=4)._ccl_weight() == 1.0  # no EventStorage
    with EventStorage(start_iter=0):
        assert _ccl_head(warmup=0)._ccl_weight() == 1.0


def test_ccl_loss_is_scaled_by_the_warmup_weight():
    head = _ccl_head(warmup=4)
    g = torch.Generator().manual_seed(1)
    features = {"res4": torch.randn(2, 12, 5, 6, generator=g).double(), "res5": torch.randn(2, 20, 5, 6, generator=g).double()}
    targets = torch.randint(0, NUM_CLASSES, (2, 5, 6), generator=g)
    full = head(features, targets)[1]["loss_ccl"]  # outside a trainer: weight 1
    with EventStorage(start_iter=0):
        ramped = head(features, targets)[1]["loss_ccl"]  # weight 1/4
    assert full.item() > 0
    # The same float64 computation times 0.25 (exact): only the product's rounding, 1e-16.
    assert ramped.item() == pytest.approx(0.25 * full.item(), rel=1e-12)


def test_non_default_ignore_value_is_ignored_by_the_main_and_auxiliary_losses():
    ignore = 9  # not 255, and not a class: cross-entropy would reject it as a target
    shapes = {"res4": ShapeSpec(channels=12, stride=1), "res5": ShapeSpec(channels=20, stride=1)}
    args = dict(in_feature="res5", num_classes=NUM_CLASSES, inter_channels=6, convs_dim=8, aux_convs_dim=8, dropout=0.0)
    torch.manual_seed(0)
    head = CCNetHead(shapes, ignore_value=ignore, aux_loss_weight=1.0, **args).double()
    g = torch.Generator().manual_seed(1)
    features = {"res4": torch.randn(2, 12, 5, 6, generator=g).double(), "res5": torch.randn(2, 20, 5, 6, generator=g).double()}
    targets = torch.randint(0, NUM_CLASSES, (2, 5, 6), generator=g)
    targets[:, :2] = ignore
    losses = head(features, targets)[1]
    main, _ = head.layers(features)  # training mode: the same batch statistics
    aux = head.aux_head(features["res4"])
    # The head takes float32 logits (as under AMP): float32 eps 1.2e-7 x a few levels of
    # summation over the 36 labelled pixels < 1e-6 relative.
    assert losses["loss_sem_seg"].item() == pytest.approx(_hand_cross_entropy(main, targets, ignore).item(), rel=1e-6)
    assert losses["loss_sem_seg_aux"].item() == pytest.approx(_hand_cross_entropy(aux, targets, ignore).item(), rel=1e-6)


def test_upsample_logits_at_stride_2_is_bilinear():
    # [0, 1] upsampled by 2 with half-pixel centres: 0, 0.25, 0.75, 1 (each row; one row in).
    logits = torch.tensor([0.0, 1.0]).view(1, 1, 1, 2)
    out = upsample_logits(logits, 2, (2, 4))
    assert out.tolist() == [[[[0.0, 0.25, 0.75, 1.0], [0.0, 0.25, 0.75, 1.0]]]]  # exact in binary


def test_fcn_head_defaults_to_batch_norm_and_dropout_0_1():
    head = FCNHead(8, 16, 3)  # the signature's defaults: norm="BN", dropout=0.1
    assert isinstance(head.conv.norm, torch.nn.BatchNorm2d)
    assert head.conv.bias is None  # a bias only without norm
    assert isinstance(head.dropout, torch.nn.Dropout2d) and head.dropout.p == 0.1
    assert isinstance(FCNHead(8, 32, 3, norm="GN").conv.norm, torch.nn.GroupNorm)


def test_fcn_predictor_starts_with_small_gaussian_weights_and_zero_bias():
    torch.manual_seed(0)
    predictor = FCNHead(8, 256, 128).predictor  # 32768 weights
    weight = predictor.weight.detach()
    # normal(0, 0.001): the sample std of 32768 draws is within 0.4% (1 sigma) of 0.001, the
    # sample mean within 5.5e-6 (1 sigma); the bounds are > 9 sigma.
    assert weight.std().item() == pytest.approx(0.001, rel=0.05)
    assert abs(weight.mean().item()) < 5e-5
    assert torch.equal(predictor.bias.detach(), torch.zeros(128))
