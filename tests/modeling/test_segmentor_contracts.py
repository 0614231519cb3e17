"""Contracts of the CCNet segmentors and their inference modes that the other tests leave open.

* the segmentors' plumbing, seen with a recording backbone and head: images (and clips)
  normalised as ``(x - PIXEL_MEAN) / PIXEL_STD``, padded to the backbone's size divisibility
  (training labels with the ignore value), logits cropped back; the clip's length reaches the
  head; mirrored copies' classes swapped by ``flip_class_map``;
* the ``TEST.SLIDING_WINDOW`` / ``TEST.AUG`` keys with non-default values (the crop size as the
  window, the long-edge cap), and the error naming an empty window size with a relative crop;
* window positions for non-square windows, overlap 0 and strides of one pixel, tables by hand;
* ``multi_scale_flip_logits`` without ``flip`` (one pass) and its bilinear half-pixel resizing
  (a textbook case);
* ``CCNetVideoHead`` without ``clip_length`` is the 2D head (clips of one frame); the message
  naming clips of mixed lengths.
"""
import pytest
import torch
from torch import nn

from ccnet.modeling.heads import CCNetHead
from ccnet.modeling.meta_arch import CCNetSemanticSegmentor, CCNetVideoHead, CCNetVideoSegmentor
from ccnet.modeling.meta_arch.dense_inference import multi_scale_flip_logits, sliding_window_logits
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from tests.modeling.test_video import _config

MEAN, STD = (100.0, 110.0, 120.0), (2.0, 4.0, 8.0)
H, W = 13, 21  # padded to 16 x 24 at size divisibility 8


class _RecordingBackbone(nn.Module):
    """The identity as a backbone with size divisibility 8; keeps what it was given."""

    size_divisibility = 8

    def __init__(self):
        super().__init__()
        self.inputs = []

    def forward(self, x):
        self.inputs.append(x.clone())
        return {"x": x}


class _RecordingHead(nn.Module):
    """Logits = the first two image channels (of the middle frames of clips); records its calls."""

    ignore_value = 7

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, features, targets=None, clip_length=1):
        self.calls.append(dict(targets=targets, clip_length=clip_length))
        x = features["x"]
        if self.training:
            return None, {"loss": x.sum() * 0.0}
        return x[clip_length // 2 :: clip_length, :2], {}


def _segmentor(cls=CCNetSemanticSegmentor, **kwargs):
    return cls(backbone=_RecordingBackbone(), sem_seg_head=_RecordingHead(), pixel_mean=MEAN, pixel_std=STD, **kwargs)


def _three_stds_above_the_mean(*leading):
    """An image (..., 3, H, W) whose normalised value is 3 everywhere (exact in binary)."""
    image = torch.tensor([m + 3 * s for m, s in zip(MEAN, STD)]).view(3, 1, 1)
    return image.expand(*leading, 3, H, W).clone()


def _assert_padded_image_of_threes(x):
    assert x.shape[-2:] == (16, 24)
    assert (x[..., :H, :W] == 3).all()
    assert (x[..., H:, :] == 0).all() and (x[..., :, W:] == 0).all()  # zero padding after normalisation


def test_inference_normalises_pads_to_the_size_divisibility_and_crops():
    model = _segmentor().eval()
    with torch.no_grad():
        out = model([{"image": _three_stds_above_the_mean()}])[0]["sem_seg"]
    (x,) = model.backbone.inputs
    assert x.shape == (1, 3, 16, 24)
    _assert_padded_image_of_threes(x)
    assert out.shape == (2, H, W) and (out == 3).all()


def test_flip_augmentation_maps_the_classes_of_the_mirrored_copy():
    class ClassIdLogits(nn.Module):
        def forward(self, features, targets=None):
            n, _, h, w = features["x"].shape
            return torch.arange(3.0).view(1, 3, 1, 1).expand(n, 3, h, w), {}  # channel k holds k

    model = CCNetSemanticSegmentor(
        backbone=_RecordingBackbone(), sem_seg_head=ClassIdLogits(), pixel_mean=MEAN, pixel_std=STD,
        test_flip=True, flip_class_map=[0, 2, 1],
    ).eval()  # fmt: skip
    with torch.no_grad():
        out = model([{"image": _three_stds_above_the_mean()}])[0]["sem_seg"]
    # Plain copy: 0, 1, 2; mirrored copy with classes 1 <-> 2: 0, 2, 1; averages 0, 1.5, 1.5.
    assert [out[k].unique().tolist() for k in range(3)] == [[0.0], [1.5], [1.5]]


def test_video_training_normalises_and_pads_frames_and_pads_labels_with_the_ignore_value():
    model = _segmentor(CCNetVideoSegmentor).train()
    clips = [{"image": _three_stds_above_the_mean(3), "sem_seg": torch.ones(H, W, dtype=torch.long)} for _ in range(2)]
    model(clips)
    (x,) = model.backbone.inputs
    assert x.shape == (6, 3, 16, 24)  # 2 clips x 3 frames
    _assert_padded_image_of_threes(x)
    (call,) = model.sem_seg_head.calls
    assert call["clip_length"] == 3
    targets = call["targets"]
    assert targets.shape == (2, 16, 24)
    assert (targets[:, :H, :W] == 1).all()
    assert (targets[:, H:] == 7).all() and (targets[:, :, W:] == 7).all()  # the head's ignore value


def test_video_inference_pads_the_clip_and_returns_its_middle_frame():
    model = _segmentor(CCNetVideoSegmentor).eval()
    clip = _three_stds_above_the_mean(3)
    clip[1] += torch.tensor(STD).view(3, 1, 1)  # the middle frame: 4 after normalisation
    with torch.no_grad():
        out = model([{"image": clip}])[0]["sem_seg"]
    (x,) = model.backbone.inputs
    assert x.shape == (3, 3, 16, 24)
    assert model.sem_seg_head.calls[0]["clip_length"] == 3
    assert out.shape == (2, H, W) and (out == 4).all()


def test_clips_of_mixed_lengths_are_named_with_their_shapes():
    clips = [{"image": torch.zeros(3, 3, 4, 5)}, {"image": torch.zeros(1, 3, 4, 5)}]
    message = (
        r"^CCNetVideoSegmentor takes clips 'image' \(T, C, H, W\) of one length per batch, got shapes "
        r"\[\(3, 3, 4, 5\), \(1, 3, 4, 5\)\] \(use INPUT.DATASET_MAPPER_NAME VideoClipDatasetMapper\)$"
    )
    with pytest.raises(ValueError, match=message):
        CCNetVideoSegmentor._clip_length(clips)


def test_video_head_without_clip_length_is_the_2d_head():
    shapes = {"res4": ShapeSpec(channels=12, stride=8), "res5": ShapeSpec(channels=20, stride=8)}
    args = dict(in_feature="res5", num_classes=4, inter_channels=6, convs_dim=8, aux_convs_dim=8, dropout=0.0)
    head_2d = CCNetHead(shapes, **args).double().eval()
    with torch.no_grad():
        head_2d.context.attention.gamma.fill_(0.8)  # a fresh gamma 0 would hide the attention
    head_3d = CCNetVideoHead(shapes, **args).double().eval()
    head_3d.load_state_dict(head_2d.state_dict())
    g = torch.Generator().manual_seed(0)
    features = {"res4": torch.randn(3, 12, 5, 6, generator=g).double(), "res5": torch.randn(3, 20, 5, 6, generator=g).double()}
    with torch.no_grad():
        logits_3d, _ = head_3d(features)  # 3 images = 3 clips of one frame
        logits_2d, _ = head_2d(features)
    assert logits_3d.shape == (3, 4, 40, 48)
    # float64, the same convolutions; the attention over (1, H, W) volumes sums the same terms
    # in another order: ~1e-16 per operation.
    torch.testing.assert_close(logits_3d, logits_2d, rtol=0, atol=1e-12)


def _spy_windows(window, overlap, height, width):
    """(y, x, h, w) of every window ``sliding_window_logits`` predicts, in order."""
    ys, xs = torch.meshgrid(torch.arange(float(height)), torch.arange(float(width)), indexing="ij")
    image = torch.stack([ys, xs])[None]  # each pixel holds its (y, x)
    seen = []

    def predict(x):
        seen.append((int(x[0, 0, 0, 0]), int(x[0, 1, 0, 0]), *x.shape[-2:]))
        return x

    out = sliding_window_logits(predict, image, window=window, overlap=overlap)
    assert torch.equal(out, image)  # the identity averaged over any cover: exact
    return seen


def test_non_square_windows_without_overlap_tile_the_image():
    # 2 x 3 windows, stride = the window: y 0, 2 and x 0, 3 on a 4 x 6 image.
    assert _spy_windows((2, 3), 0.0, 4, 6) == [(0, 0, 2, 3), (0, 3, 2, 3), (2, 0, 2, 3), (2, 3, 2, 3)]


def test_windows_of_two_pixels_at_overlap_one_half_move_by_one_pixel():
    # stride ceil(2 * 0.5) = 1: y and x 0, 1, 2 on a 4 x 4 image.
    assert _spy_windows((2, 2), 0.5, 4, 4) == [(y, x, 2, 2) for y in range(3) for x in range(3)]


def test_multi_scale_flip_logits_without_flip_predicts_once():
    calls = []

    def predict(x):
        calls.append(x.shape)
        return x.cumsum(-1)  # not mirror-symmetric: a flipped pass would change the result

    image = torch.arange(6.0).view(1, 1, 2, 3)
    out = multi_scale_flip_logits(predict, image)
    assert calls == [(1, 1, 2, 3)]
    assert out.tolist() == [[[[0.0, 1.0, 3.0], [3.0, 7.0, 12.0]]]]  # small integers: exact


def test_multi_scale_resizing_is_bilinear_with_half_pixel_centres():
    # Columns [0, 1] -> 4 columns at half-pixel centres: 0, 0.25, 0.75, 1; back to 2 columns,
    # each the mean of its two source pixels: 0.125, 0.875 (align_corners=True would give 0, 1).
    image = torch.tensor([0.0, 1.0]).expand(1, 1, 2, 2)
    out = multi_scale_flip_logits(lambda x: x, image, short_edge_sizes=(4,))
    assert out.tolist() == [[[[0.125, 0.875], [0.125, 0.875]]]]  # exact in binary


# Tiny models built from config (test_video.py's 16-channel CCNet on a deep-stem ResNet).


def test_empty_window_size_with_a_relative_crop_is_named():
    cfg = _config(False, "TEST.SLIDING_WINDOW.ENABLED", True, "INPUT.CROP.TYPE", "relative_range")
    message = (
        r"^TEST\.SLIDING_WINDOW\.SIZE is empty \(= the crop size\) but INPUT\.CROP\.TYPE is 'relative_range', "
        r"not 'absolute': set TEST\.SLIDING_WINDOW\.SIZE$"
    )
    with pytest.raises(ValueError, match=message):
        build_model(cfg)


def test_empty_window_size_is_the_absolute_crop_size():
    opts = ["TEST.SLIDING_WINDOW.ENABLED", True, "INPUT.CROP.TYPE", "absolute", "INPUT.CROP.SIZE", [24, 28]]
    assert build_model(_config(False, *opts)).sliding_window == (24, 28)


def test_test_time_scales_cap_the_long_edge_at_the_max_size_key():
    aug = ["TEST.AUG.ENABLED", True, "TEST.AUG.MIN_SIZES", [20], "TEST.AUG.MAX_SIZE", 30, "TEST.AUG.FLIP", False]
    model = build_model(_config(False, *aug))
    sizes = []

    def spy(image):
        sizes.append(tuple(image.shape[-2:]))
        return torch.zeros(1, 2, *image.shape[-2:])

    model.predict_whole_image = spy
    model.predict_logits(torch.zeros(1, 3, 10, 20))
    # Short edge 10 -> 20 gives 20 x 40; the long edge capped at 30: 15 x 30.
    assert model.test_max_size == 30 and sizes == [(15, 30)]
