"""Whole-image, sliding-window and test-time-augmented inference of CCNetSemanticSegmentor."""
import pytest
import torch

from ccnet.data.datasets.lip import FLIP_CLASS_MAP
from ccnet.modeling.meta_arch.dense_inference import multi_scale_flip_logits, sliding_window_logits, window_starts
from tests.test_semantic_configs import build_tiny_model

CONFIG = "configs/Cityscapes-SemanticSegmentation/rcca_r2_R_101_OS8_60k.yaml"


@pytest.mark.parametrize(
    "length, window, stride, starts",
    [(10, 4, 3, [0, 3, 6]), (10, 4, 2, [0, 2, 4, 6]), (11, 4, 4, [0, 4, 7]), (4, 4, 1, [0]), (3, 8, 5, [0])],
)
def test_window_starts(length, window, stride, starts):
    assert window_starts(length, window, stride) == starts


def test_sliding_window_averages_overlapping_windows():
    # One row [0, 1, 2, 3], windows of width 2 at stride 1 (overlap 1/2); predict = window mean.
    # Window means 0.5, 1.5, 2.5 -> pixel averages 0.5, (0.5+1.5)/2, (1.5+2.5)/2, 2.5.
    image = torch.arange(4.0).view(1, 1, 1, 4)
    mean = sliding_window_logits(lambda x: x.mean().expand_as(x), image, window=(1, 2), overlap=0.5)
    assert mean.flatten().tolist() == [0.5, 1.0, 2.0, 2.5]


def test_sliding_window_of_a_pointwise_predictor_equals_the_whole_image():
    conv = torch.nn.Conv2d(3, 5, kernel_size=1)
    image = torch.randn(1, 3, 11, 9)
    with torch.no_grad():
        slid = sliding_window_logits(conv, image, window=(5, 4), overlap=0.5)
        # float32 1x1 conv of 3 channels, |logit| <= 2.7: eps x 2.7 x 2 = 6.5e-7 (measured 6e-8).
        assert torch.allclose(slid, conv(image), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="overlap"):
        sliding_window_logits(conv, image, window=(5, 4), overlap=1.0)


def test_flip_augmentation_swaps_the_mirrored_classes_back():
    # predict = identity on a 3-channel "logit" image; mirrored copy is flipped back and its
    # channels 1 and 2 swapped: result = (x + x[:, [0, 2, 1]]) / 2.
    image = torch.randn(1, 3, 4, 5)
    out = multi_scale_flip_logits(lambda x: x, image, flip=True, flip_class_map=[0, 2, 1])
    assert torch.equal(out, (image + image[:, [0, 2, 1]]) / 2)  # the same two float ops (measured exact)


def test_multi_scale_augmentation_resizes_the_short_edge_and_back():
    sizes = []

    def predict(x):
        sizes.append(tuple(x.shape[-2:]))
        return torch.ones(1, 2, *x.shape[-2:])

    out = multi_scale_flip_logits(predict, torch.zeros(1, 3, 10, 20), short_edge_sizes=(5, 20), max_size=30, flip=True)
    assert sizes == [(5, 10), (5, 10), (15, 30), (15, 30)]  # 20 -> 20x40, long edge capped at 30
    assert out.shape == (1, 2, 10, 20) and torch.equal(out, torch.ones_like(out))  # averages of ones: exact


@pytest.fixture(scope="module")
def tiny_model():
    _, model = build_tiny_model(CONFIG, ["TEST.SLIDING_WINDOW.SIZE", "(64, 64)"])
    return model.eval()


def test_sliding_window_covering_the_image_equals_whole_image_inference(tiny_model):
    inputs = [{"image": torch.randint(0, 256, (3, 41, 57), dtype=torch.uint8)}]
    assert tiny_model.sliding_window == (64, 64)
    with torch.no_grad():
        slid = tiny_model(inputs)[0]["sem_seg"]
        tiny_model.sliding_window = None
        try:
            whole = tiny_model(inputs)[0]["sem_seg"]
        finally:
            tiny_model.sliding_window = (64, 64)
    assert whole.shape == (tiny_model.sem_seg_head.classifier.predictor.out_channels, 41, 57)
    assert torch.equal(slid, whole)


def test_smaller_windows_cover_the_image(tiny_model):
    inputs = [{"image": torch.randint(0, 256, (3, 41, 57), dtype=torch.uint8), "height": 82, "width": 114}]
    tiny_model.sliding_window = (24, 32)
    try:
        with torch.no_grad():
            out = tiny_model(inputs)[0]["sem_seg"]
    finally:
        tiny_model.sliding_window = (64, 64)
    assert out.shape[-2:] == (82, 114) and torch.isfinite(out).all()


def test_test_time_augmentation_from_config_mirrors_lip_classes():
    config = "configs/LIP-SemanticSegmentation/rcca_r2_R_101_OS8_114k.yaml"
    _, model = build_tiny_model(config, ["TEST.AUG.ENABLED", "True", "TEST.AUG.MIN_SIZES", "(20, 30)"])
    assert model.test_short_edge_sizes == (20, 30) and model.test_flip
    assert model.flip_class_map == FLIP_CLASS_MAP  # from lip_sem_seg_train's metadata
    with torch.no_grad():
        out = model.eval()([{"image": torch.randint(0, 256, (3, 25, 35), dtype=torch.uint8)}])[0]["sem_seg"]
    assert out.shape == (20, 25, 35) and torch.isfinite(out).all()
