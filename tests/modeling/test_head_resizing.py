"""The CCNet head at stride > 1: upsampled logits, resized CCL labels, OHEM and the other loss types.

Every expected value comes from an independent computation: bilinear upsampling as explicit
interpolation matrices (PyTorch's ``align_corners=False`` rule written out), nearest label
resizing as plain slicing, and the losses as sorted per-pixel cross-entropies.
"""
import math

import pytest
import torch

from ccnet.engine.cli import build_config
from ccnet.modeling import category_consistent_loss
from ccnet.modeling.heads import CCNetHead, upsample_logits
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_sem_seg_head

NUM_CLASSES = 4
STRIDE = 8
H, W = 5, 6  # feature map; the input is 40 x 48


def _head(**kwargs):
    shapes = {"res4": ShapeSpec(channels=12, stride=STRIDE), "res5": ShapeSpec(channels=20, stride=STRIDE)}
    args = dict(in_feature="res5", num_classes=NUM_CLASSES, inter_channels=6, convs_dim=8, aux_convs_dim=8, dropout=0.0)
    args.update(kwargs)
    torch.manual_seed(0)
    return CCNetHead(shapes, **args).double()


def _features(n=2):
    g = torch.Generator().manual_seed(1)
    return {"res4": torch.randn(n, 12, H, W, generator=g).double(), "res5": torch.randn(n, 20, H, W, generator=g).double()}


def _targets(n=2, h=H * STRIDE, w=W * STRIDE):
    g = torch.Generator().manual_seed(2)
    targets = torch.randint(0, NUM_CLASSES, (n, h, w), generator=g)
    targets[:, :3] = 255
    return targets


def _bilinear_matrix(out_size: int, in_size: int, scale: int) -> torch.Tensor:
    """(out, in) weights of 1-D linear interpolation, half-pixel centres, edges clamped."""
    m = torch.zeros(out_size, in_size, dtype=torch.float64)
    for o in range(out_size):
        src = max((o + 0.5) / scale - 0.5, 0.0)
        i0 = min(int(math.floor(src)), in_size - 1)
        i1 = min(i0 + 1, in_size - 1)
        frac = src - i0
        m[o, i0] += 1 - frac
        m[o, i1] += frac
    return m


def _upsample_by_hand(logits: torch.Tensor, stride: int, size) -> torch.Tensor:
    """(N, K, h, w) -> (N, K, h*stride, w*stride) bilinear, then the top-left ``size``."""
    h, w = logits.shape[-2:]
    my = _bilinear_matrix(h * stride, h, stride)
    mx = _bilinear_matrix(w * stride, w, stride)
    return (my @ logits.double() @ mx.t())[..., : size[0], : size[1]]


def _pixel_cross_entropy(logits, targets):
    """-log softmax of the true class at every labelled pixel, by hand (flat tensor)."""
    log_p = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    valid = targets != 255
    true_class = torch.where(valid, targets, torch.zeros_like(targets))
    return -log_p.gather(1, true_class[:, None])[:, 0][valid]


def test_hand_bilinear_matrix_matches_the_textbook_case():
    # Upsampling [0, 1] by 2 with half-pixel centres: 0, 0.25, 0.75, 1.
    upsampled = _bilinear_matrix(4, 2, 2) @ torch.tensor([0.0, 1.0], dtype=torch.float64)
    assert upsampled.tolist() == [0.0, 0.25, 0.75, 1.0]  # exact in binary floating point


@pytest.mark.parametrize("size", [(40, 48), (37, 45)])
def test_upsample_logits_is_bilinear_half_pixel_and_crops_the_top_left(size):
    logits = torch.randn(2, 3, H, W, dtype=torch.float64)
    # float64 end to end: the only error is rounding, ~1e-16 per operation over 4 terms.
    torch.testing.assert_close(upsample_logits(logits, STRIDE, size), _upsample_by_hand(logits, STRIDE, size), rtol=0, atol=1e-12)


def test_upsample_logits_names_logits_that_do_not_cover_the_image():
    with pytest.raises(ValueError, match=r"logits \(1, 3, 5, 6\) at stride 8 do not cover 41x48"):
        upsample_logits(torch.zeros(1, 3, 5, 6), 8, (41, 48))


def test_inference_logits_are_the_bilinearly_upsampled_classifier_output():
    head = _head().eval()
    features = _features()
    logits, _ = head(features)
    low, _ = head.layers(features)
    torch.testing.assert_close(logits, _upsample_by_hand(low, STRIDE, (40, 48)), rtol=0, atol=1e-12)


def test_training_loss_is_cross_entropy_of_the_upsampled_logits_at_stride_8():
    head = _head(aux_in_feature="")
    features, targets = _features(), _targets()
    loss = head(features, targets)[1]["loss_sem_seg"]
    low, _ = head.layers(features)  # training mode: the same batch statistics
    expected = _pixel_cross_entropy(_upsample_by_hand(low, STRIDE, (40, 48)), targets).mean()
    # The head upsamples float32 logits (as under AMP): float32 eps 1.2e-7 x ~12 levels of
    # pairwise summation over the 3456 labelled pixels = 1.4e-6 relative.
    assert loss.item() == pytest.approx(expected.item(), rel=2e-6)


def test_training_loss_crops_logits_to_labels_not_a_multiple_of_the_stride():
    head = _head(aux_in_feature="")
    features, targets = _features(), _targets(h=37, w=45)
    loss = head(features, targets)[1]["loss_sem_seg"]
    low, _ = head.layers(features)
    expected = _pixel_cross_entropy(_upsample_by_hand(low, STRIDE, (37, 45)), targets).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=2e-6)  # float32 losses, as above


def test_auxiliary_loss_is_on_upsampled_res4_logits():
    head = _head(aux_loss_weight=1.0)
    features, targets = _features(), _targets()
    loss = head(features, targets)[1]["loss_sem_seg_aux"]
    aux = head.aux_head(features["res4"])
    expected = _pixel_cross_entropy(_upsample_by_hand(aux, STRIDE, (40, 48)), targets).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=2e-6)  # float32 losses, as above


def test_ccl_labels_are_resized_with_nearest_neighbour_at_stride_8():
    head = _head(aux_in_feature="", ccl=dict(delta_v=0.1, gamma=0.5))
    features, targets = _features(), _targets()
    loss = head(features, targets)[1]["loss_ccl"]
    embedding = head.ccl_embedding(head.context(features["res5"]))
    # PyTorch's "nearest" takes source pixel floor(i * 40 / 5) = 8 i: the top-left of each cell.
    expected = category_consistent_loss(embedding, targets[:, ::STRIDE, ::STRIDE], delta_v=0.1, gamma=0.5)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)  # the same float64 computation


def test_ohem_in_the_head_keeps_min_kept_scaled_by_the_label_count():
    # threshold 0: no pixel passes it, so exactly min_kept pixels are kept, the hardest ones.
    # min_kept = ceil(1000 * P / 10000) with P = 2 * 40 * 48 = 3840 label pixels -> 384.
    # (The logit count at the head's resolution, 2 * 4 * 5 * 6 = 240, would give 24; at the
    # input resolution, 15360, it would give 1536.)
    ohem = dict(threshold=0.0, min_kept=1000, reference_pixels=10000)
    head = _head(aux_in_feature="", loss_type="ohem", ohem=ohem)
    features, targets = _features(), _targets()
    loss = head(features, targets)[1]["loss_sem_seg"]
    low, _ = head.layers(features)
    pixel_losses = _pixel_cross_entropy(_upsample_by_hand(low, STRIDE, (40, 48)), targets)
    assert pixel_losses.numel() > 384
    expected = pixel_losses.sort(descending=True).values[:384].mean()
    assert loss.item() == pytest.approx(expected.item(), rel=2e-6)  # float32 losses, as above


def test_hard_pixel_mining_is_the_mean_of_the_top_20_percent_pixel_losses():
    # DeepLab's rule: the top 20% of all pixels (ignored pixels count, with loss 0): 768 of 3840.
    head = _head(aux_in_feature="", loss_type="hard_pixel_mining")
    features, targets = _features(), _targets()
    loss = head(features, targets)[1]["loss_sem_seg"]
    low, _ = head.layers(features)
    pixel_losses = _pixel_cross_entropy(_upsample_by_hand(low, STRIDE, (40, 48)), targets)
    expected = pixel_losses.sort(descending=True).values[:768].mean()
    assert loss.item() == pytest.approx(expected.item(), rel=2e-6)  # float32 losses, as above


def test_loss_weight_key_scales_the_main_loss_only():
    opts = [
        "MODEL.SEM_SEG_HEAD.NAME", "CCNetHead", "MODEL.SEM_SEG_HEAD.IN_FEATURES", "['res5']",
        "MODEL.SEM_SEG_HEAD.NUM_CLASSES", str(NUM_CLASSES), "MODEL.SEM_SEG_HEAD.CONVS_DIM", "8",
        "MODEL.SEM_SEG_HEAD.NORM", "", "MODEL.CONTEXT.NORM", "", "MODEL.CONTEXT.REDUCTION", "3",  # 20 -> 6 channels
        "MODEL.CCNET.AUX_CONVS_DIM", "8",
        "MODEL.CCNET.DROPOUT", "0.0",
    ]  # fmt: skip
    shapes = {"res4": ShapeSpec(channels=12, stride=STRIDE), "res5": ShapeSpec(channels=20, stride=STRIDE)}
    losses = {}
    for weight in ("1.0", "2.5"):
        torch.manual_seed(0)
        head = build_sem_seg_head(build_config("", opts + ["MODEL.SEM_SEG_HEAD.LOSS_WEIGHT", weight]), shapes).double()
        losses[weight] = head(_features(), _targets())[1]
    # One float32 multiplication apart: 6e-8 relative; the auxiliary loss must not change at all.
    assert losses["2.5"]["loss_sem_seg"].item() == pytest.approx(2.5 * losses["1.0"]["loss_sem_seg"].item(), rel=1e-6)
    assert losses["2.5"]["loss_sem_seg_aux"].item() == losses["1.0"]["loss_sem_seg_aux"].item()
