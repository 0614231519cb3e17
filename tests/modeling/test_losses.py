"""OHEM cross-entropy and the category consistent loss against values computed by hand."""
import math

import pytest
import torch

from ccnet.modeling import category_consistent_loss
from ccnet.modeling.losses import OhemCrossEntropy, cross_entropy, ohem_cross_entropy, ohem_pixel_mask

IGNORE = 255
# pytest.approx's default rel 1e-6 throughout: float64 (CCL) or float32 (OHEM) losses of a few
# terms round at <= 1e-7 relative; every planted error in these formulas moves them by > 1e-2.


def _features(*pixels):
    """A (1, D, 1, W) feature map whose pixels are the given D-vectors, left to right."""
    return torch.tensor(pixels, dtype=torch.float64).t()[None, :, None, :]


def _labels(*labels):
    return torch.tensor(labels)[None, None, :]


# ---------------------------------------------------------------- category consistent loss


def test_ccl_variance_quadratic_branch_and_ignored_pixels():
    # class 0: features 0 and 2 -> centre 1, both at distance 1 (in (0.5, 1.5]): (1 - 0.5)^2 = 0.25
    # class 1: feature 5 alone -> distance 0 -> 0.  l_var = (0.25 + 0) / 2 = 0.125
    # centres 1 and 5 are 4 > 2 * 1.5 apart -> l_dis = 0;  l_reg = (1 + 5) / 2 = 3
    # the ignored pixel (feature 100) must change nothing.
    loss = category_consistent_loss(_features([0.0], [2.0], [5.0], [100.0]), _labels(0, 0, 1, IGNORE))
    assert loss.item() == pytest.approx(0.125 + 0.0 + 0.001 * 3)


def test_ccl_variance_linear_branch_and_single_class_has_no_distance_term():
    # one class, features 0 and 6: centre 3, distances 3 > delta_d = 1.5 -> linear branch
    # 3 - 1.5 + (1.5 - 0.5)^2 = 2.5 (the quadratic would give 6.25); one class -> l_dis = 0
    loss = category_consistent_loss(_features([0.0], [6.0]), _labels(0, 0))
    assert loss.item() == pytest.approx(2.5 + 0.0 + 0.001 * 3)


def test_ccl_distance_term_over_pairs_of_classes():
    # three single-pixel classes at (0,0), (1,0), (0,4): l_var = 0
    # centre distances 1, 4, sqrt(17); hinge max(0, 3 - d)^2 = 4, 0, 0 -> mean over pairs 4/3
    # l_reg = (0 + 1 + 4) / 3
    loss = category_consistent_loss(_features([0.0, 0.0], [1.0, 0.0], [0.0, 4.0]), _labels(3, 7, 1))
    assert loss.item() == pytest.approx(4 / 3 + 0.001 * 5 / 3)


def test_ccl_weights_and_deltas_are_used():
    # class 0: features 0, 2 (distance 1 each); class 1: feature 3. delta_v = 0.2, delta_d = 2:
    # l_var = ((1 - 0.2)^2 + 0) / 2 = 0.32; centres 1 and 3 -> max(0, 4 - 2)^2 = 4; l_reg = 2
    loss = category_consistent_loss(
        _features([0.0], [2.0], [3.0]), _labels(0, 0, 1), delta_v=0.2, delta_d=2.0, alpha=2.0, beta=0.5, gamma=0.1
    )
    assert loss.item() == pytest.approx(2.0 * 0.32 + 0.5 * 4.0 + 0.1 * 2.0)


def test_ccl_averages_over_images_with_labelled_pixels():
    features = torch.cat([_features([0.0], [6.0]), _features([0.0], [2.0]), _features([9.0], [9.0])])
    labels = torch.cat([_labels(0, 0), _labels(1, 1), _labels(IGNORE, IGNORE)])
    # image 1: 2.503 (see above); image 2: 0.25 + 0.001 * 1; image 3 has no labelled pixel
    expected = (2.5 + 0.003 + 0.25 + 0.001) / 2
    assert category_consistent_loss(features, labels).item() == pytest.approx(expected)


def test_ccl_without_labelled_pixels_is_zero_and_differentiable():
    features = torch.randn(2, 4, 3, 3, requires_grad=True)
    loss = category_consistent_loss(features, torch.full((2, 3, 3), IGNORE))
    loss.backward()
    assert loss.item() == 0 and torch.all(features.grad == 0)


def test_ccl_gradient_is_finite_when_pixels_sit_on_their_centre():
    features = torch.zeros(1, 3, 2, 2, requires_grad=True)
    category_consistent_loss(features, torch.tensor([[[0, 0], [1, 1]]])).backward()
    assert torch.isfinite(features.grad).all()


def test_ccl_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same"):
        category_consistent_loss(torch.zeros(1, 2, 4, 4), torch.zeros(1, 8, 8, dtype=torch.long))


# ---------------------------------------------------------------- OHEM


def _ohem_case():
    """Two classes, four pixels. True-class probabilities: sigmoid(2), 0.5, sigmoid(1), ignored."""
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0], [0.0, 1.0], [5.0, -5.0]]).t().reshape(1, 2, 1, 4)
    targets = torch.tensor([0, 0, 1, IGNORE]).reshape(1, 1, 4)
    minus_log_p = [math.log(1 + math.exp(-2)), math.log(2), math.log(1 + math.exp(-1))]  # by hand
    return logits, targets, minus_log_p


@pytest.mark.parametrize(
    "min_kept, kept",
    [
        (0, [False, True, False, False]),  # only p = 0.5 < 0.7 (sigmoid(1) = 0.73, sigmoid(2) = 0.88)
        (1, [False, True, False, False]),
        (2, [False, True, True, False]),  # the two lowest probabilities
        (10, [True, True, True, False]),  # every labelled pixel, never the ignored one
    ],
)
def test_ohem_keeps_hard_pixels_and_at_least_min_kept(min_kept, kept):
    logits, targets, _ = _ohem_case()
    mask = ohem_pixel_mask(logits, targets, threshold=0.7, min_kept=min_kept, ignore_index=IGNORE)
    assert mask.flatten().tolist() == kept


def test_ohem_threshold_decides_without_min_kept():
    logits, targets, _ = _ohem_case()
    mask = ohem_pixel_mask(logits, targets, threshold=0.8, min_kept=0, ignore_index=IGNORE)
    assert mask.flatten().tolist() == [False, True, True, False]


def test_ohem_loss_is_mean_cross_entropy_over_kept_pixels():
    logits, targets, minus_log_p = _ohem_case()
    loss = ohem_cross_entropy(logits, targets, threshold=0.7, min_kept=2, ignore_index=IGNORE)
    assert loss.item() == pytest.approx((minus_log_p[1] + minus_log_p[2]) / 2)
    assert cross_entropy(logits, targets, ignore_index=IGNORE).item() == pytest.approx(sum(minus_log_p) / 3)


def test_ohem_min_kept_scales_with_the_batch_pixels():
    ohem = OhemCrossEntropy(threshold=0.7, min_kept=100000, reference_pixels=769 * 769, ignore_index=IGNORE)
    assert ohem.batch_min_kept(769 * 769) == 100000
    assert ohem.batch_min_kept(2 * 65 * 65) == 1429  # 100000 * 8450 / 591361 = 1428.94, rounded up


def test_losses_without_labelled_pixels_are_zero():
    logits = torch.randn(1, 3, 4, 4)
    targets = torch.full((1, 4, 4), IGNORE)
    assert ohem_cross_entropy(logits, targets, min_kept=5).item() == 0
    assert cross_entropy(logits, targets).item() == 0
