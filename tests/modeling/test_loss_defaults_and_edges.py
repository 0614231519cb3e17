"""The losses' documented defaults, their ignore labels and their boundary cases, by hand."""
import math

import pytest
import torch

from ccnet.modeling import category_consistent_loss
from ccnet.modeling.losses import CategoryConsistentLoss, OhemCrossEntropy, ohem_cross_entropy, ohem_pixel_mask
from tests.modeling.test_losses import _features, _labels


def test_ccl_module_defaults_are_the_papers():
    # The hand case of test_ccl_variance_quadratic_branch_and_ignored_pixels with the paper's
    # delta_v 0.5, delta_d 1.5, alpha = beta = 1, gamma 0.001 and ignore label 255: 0.125 + 0.003.
    loss = CategoryConsistentLoss()(_features([0.0], [2.0], [5.0], [100.0]), _labels(0, 0, 1, 255))
    assert loss.item() == pytest.approx(0.128, rel=1e-12)  # float64, a few terms


def test_ccl_module_passes_its_ignore_label():
    # With ignore_index 7 the pixel labelled 7 (feature 100) is left out: the same 0.128.
    loss = CategoryConsistentLoss(ignore_index=7)(_features([0.0], [2.0], [5.0], [100.0]), _labels(0, 0, 1, 7))
    assert loss.item() == pytest.approx(0.128, rel=1e-12)  # float64, a few terms


def test_ccl_distance_hinge_is_squared():
    # Two single-pixel classes 2 apart, delta_d 1.5: max(0, 3 - 2)^2 = 1 (a hinge of 2 would
    # not tell a square from a doubling); l_var = 0, l_reg = (0 + 2) / 2 = 1.
    loss = category_consistent_loss(_features([0.0], [2.0]), _labels(0, 1), gamma=0.1)
    assert loss.item() == pytest.approx(1.0 + 0.1 * 1.0, rel=1e-12)  # float64, a few terms


def test_ccl_linear_branch_with_another_gap_between_the_deltas():
    # One class, features 0 and 6: distances 3 > delta_d = 2; delta_v = 0 -> gap 2:
    # 3 - 2 + (2 - 0)^2 = 5 (the gap cubed would give 9); l_reg = 3, gamma 0.
    loss = category_consistent_loss(_features([0.0], [6.0]), _labels(0, 0), delta_v=0.0, delta_d=2.0, gamma=0.0)
    assert loss.item() == pytest.approx(5.0, rel=1e-12)  # float64, a few terms


def test_ohem_threshold_is_strict():
    # logits (0, 0): the true class has probability exactly 1/2, not below a threshold of 1/2.
    logits = torch.zeros(1, 2, 1, 2)
    logits[0, 0, 0, 1] = 1.0  # pixel 1: p = sigmoid(1) = 0.73 for class 0
    targets = torch.tensor([[[0, 1]]])  # pixel 1's true class 1: p = 0.27 < 0.5
    mask = ohem_pixel_mask(logits, targets, threshold=0.5, min_kept=0, ignore_index=255)
    assert mask.flatten().tolist() == [False, True]


def test_ohem_module_passes_its_ignore_label():
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]]).t().reshape(1, 2, 1, 2)
    targets = torch.tensor([[[0, 7]]])  # the second pixel is ignored with ignore_index 7
    ohem = OhemCrossEntropy(threshold=1.0, min_kept=0, reference_pixels=0, ignore_index=7)
    assert ohem(logits, targets).item() == pytest.approx(math.log(1 + math.exp(-2)), rel=1e-6)  # float32 CE


def test_ohem_min_kept_without_and_with_a_one_pixel_reference():
    assert OhemCrossEntropy(threshold=0.7, min_kept=50, reference_pixels=0, ignore_index=255).batch_min_kept(999) == 50
    assert OhemCrossEntropy(threshold=0.7, min_kept=50, reference_pixels=-1, ignore_index=255).batch_min_kept(999) == 50
    assert OhemCrossEntropy(threshold=0.7, min_kept=3, reference_pixels=1, ignore_index=255).batch_min_kept(10) == 30


def test_ohem_defaults_are_the_public_codes():
    # threshold 0.7 and min_kept 100000 (per 769x769 crop in the public code), on 120000 pixels:
    # 100000 hard pixels (true-class logit 0 against 2: p = 1 / (1 + e^2) = 0.12 < 0.7) and
    # 20000 easy ones (p = 0.88). Exactly min_kept = 100000 pixels pass the threshold, so the loss
    # is the hard pixels' -log p = log(1 + e^2). A threshold above 0.88 would add the easy pixels,
    # a min_kept of 100001 one easy pixel: (100000 * 2.127 + 0.127) / 100001 = 2.127 - 2.0e-5.
    logits = torch.zeros(1, 2, 300, 400)
    logits[0, 1, :250] = 2.0  # rows 0..249: class 1 scores higher; targets 0 -> hard
    logits[0, 0, 250:] = 2.0  # rows 250..299: class 0 scores higher; targets 0 -> easy
    targets = torch.zeros(1, 300, 400, dtype=torch.long)
    hard = math.log(1 + math.exp(2))
    # float32 mean of 1e5 equal terms: pairwise summation, ~1e-7 relative (the mutants: 1e-5).
    assert ohem_cross_entropy(logits, targets).item() == pytest.approx(hard, rel=1e-6)


def test_ccl_module_passes_every_hyperparameter():
    # test_ccl_weights_and_deltas_are_used's hand case through the module: 2 * 0.32 + 0.5 * 4 + 0.1 * 2.
    ccl = CategoryConsistentLoss(delta_v=0.2, delta_d=2.0, alpha=2.0, beta=0.5, gamma=0.1)
    loss = ccl(_features([0.0], [2.0], [3.0]), _labels(0, 0, 1))
    assert loss.item() == pytest.approx(2.0 * 0.32 + 0.5 * 4.0 + 0.1 * 2.0, rel=1e-12)  # float64, a few terms
