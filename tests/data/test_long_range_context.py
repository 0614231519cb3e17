"""The long-range dataset against the benchmark's own networks: who can see the cue.

Recolouring the cue must leave an object's logits unchanged for the context-free FCN, and
for RCCA R=1 on off-axis objects, and must change them for R=1 on aligned objects and for
R=2 and the non-local block on every object. Random weights (attention switched on) are
enough: this is about which pixels can influence which, not about training.
"""
import dataclasses
import os

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model

from ccnet.data.datasets.long_range import CUE_COLOURS, SPLITS, draw_long_range_image
from ccnet.engine.cli import build_config
from ccnet.layers import CrissCrossAttention, NonLocalBlock

from ..conftest import REPO_ROOT

CONFIG_DIR = os.path.join(REPO_ROOT, "configs", "Synthetic-LongRange")
SPEC = dataclasses.replace(SPLITS["val"], num_images=6, seed=123)
# A blind pixel's logits do not change at all (the same arithmetic on the same numbers); a
# cue seen through two hops of random attention moves them by ~1e-5 or more.
BLIND, SEES = 1e-7, 1e-6


def _model(variant: str):
    cfg = build_config(os.path.join(CONFIG_DIR, f"{variant}.yaml"), ["MODEL.DEVICE", "cpu"])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, CrissCrossAttention):
                module.gamma.fill_(1.0)  # a fresh block is the identity
            if isinstance(module, NonLocalBlock):
                torch.nn.init.normal_(module.out.weight, std=0.1)
    return model


def _recoloured(image: np.ndarray, cue_box) -> np.ndarray:
    """The same image with the cue's colour channels rotated (another cue colour)."""
    x0, y0, x1, y1 = cue_box
    out = image.copy()
    out[y0:y1, x0:x1] = np.roll(image[y0:y1, x0:x1], 1, axis=-1)
    return out


@pytest.fixture(scope="module")
def logit_changes():
    """variant -> [(object record, max |logit change| over its pixels, same near the cue)]."""
    images = [draw_long_range_image(SPEC, i) for i in range(SPEC.num_images)]
    results = {}
    for variant in ("fcn", "rcca_r1", "rcca_r2", "nl"):
        model = _model(variant)
        changes = []
        for image, _, record in images:
            inputs = [
                {"image": torch.from_numpy(np.ascontiguousarray(im.transpose(2, 0, 1))), "height": 128, "width": 128}
                for im in (image, _recoloured(image, record["cue"]["bbox"]))
            ]
            with torch.no_grad():
                original, recoloured = (out["sem_seg"] for out in model(inputs))
            delta = (original - recoloured).abs().amax(0).numpy()
            x0, y0, x1, y1 = record["cue"]["bbox"]
            near_cue = delta[y0:y1, x0:x1].max()
            for obj in record["objects"]:
                x0, y0, x1, y1 = obj["bbox"]
                changes.append((obj, float(delta[y0:y1, x0:x1].max()), float(near_cue)))
        results[variant] = changes
    return results


def test_images_have_both_kinds_of_objects(logit_changes):
    kinds = {obj["aligned"] for obj, _, _ in logit_changes["fcn"]}
    assert kinds == {True, False}
    assert len(CUE_COLOURS) == 3


def test_fcn_cannot_see_the_cue(logit_changes):
    for obj, change, near_cue in logit_changes["fcn"]:
        assert near_cue > 1e-3  # the recolouring is visible to the network ...
        assert change < BLIND, obj  # ... but not from any object


def test_rcca_r1_sees_the_cue_from_aligned_objects_only(logit_changes):
    for obj, change, _ in logit_changes["rcca_r1"]:
        if obj["aligned"]:
            assert change > SEES, obj
        else:
            assert change < BLIND, obj


@pytest.mark.parametrize("variant", ["rcca_r2", "nl"])
def test_two_hops_and_non_local_see_the_cue_from_every_object(logit_changes, variant):
    for obj, change, _ in logit_changes[variant]:
        assert change > SEES, obj


@pytest.mark.parametrize("variant", ["fcn", "nl", "rcca_r1", "rcca_r2", "rcca_r2_ccl"])
def test_every_variant_trains_a_step(variant):
    cfg = build_config(os.path.join(CONFIG_DIR, f"{variant}.yaml"), ["MODEL.DEVICE", "cpu"])
    torch.manual_seed(0)
    model = build_model(cfg).train()
    batch = []
    for i in range(2):
        image, label, _ = draw_long_range_image(SPEC, i)
        batch.append({"image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))), "sem_seg": torch.from_numpy(label).long()})
    losses = model(batch)
    assert ("loss_ccl" in losses) == variant.endswith("ccl")
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())
    attention = model.sem_seg_head.context.attention
    if variant != "fcn":  # the (zero-initialised) attention gets a gradient from the first step
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in attention.parameters())
