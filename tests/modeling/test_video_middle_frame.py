"""The video segmentor at T > 1 outputs and supervises the middle frame, checked against the 2D model.

With the attention's fresh gamma = 0 (identity), RCCA3d works frame by frame, so on a clip
(f0, f1, f2) the video model must compute exactly what the 2D CCNet computes on f1 alone: a
model that returned or supervised the first or the last frame gives the 2D result of f0 or f2.
"""
import pytest
import torch

from detectron2.data import transforms as T
from detectron2.modeling import build_model
from tests.data.test_clip_mapper import SIZE as FRAME_SIZE
from tests.data.test_clip_mapper import VideoClipDatasetMapper, write_video_dataset
from tests.modeling.test_video import _clips, _config

NO_DROPOUT = ["MODEL.CCNET.DROPOUT", 0.0]


def _models():
    torch.manual_seed(0)
    model_2d = build_model(_config(False, *NO_DROPOUT))
    model_3d = build_model(_config(True, *NO_DROPOUT))
    model_3d.load_state_dict(model_2d.state_dict())
    assert model_3d.sem_seg_head.context.attention.gamma.item() == 0
    return model_2d, model_3d


def _frame(clip, t):
    return dict(clip, image=clip["image"][t])


def test_inference_returns_the_middle_frame_of_a_clip_of_three():
    model_2d, model_3d = _models()
    model_2d.eval(), model_3d.eval()
    clip = _clips(1, 3)[0]
    with torch.no_grad():
        out = model_3d([clip])[0]["sem_seg"]
        per_frame = [model_2d([_frame(clip, t)])[0]["sem_seg"] for t in range(3)]
    # The same convolutions on the same frame, batched differently (1 vs 3 frames): measured
    # 2.7e-6 on logits up to 3 (float32 eps x |logit| x a few layers); f0 and f2 differ by > 1.
    torch.testing.assert_close(out, per_frame[1], rtol=0, atol=2e-5)
    for t in (0, 2):
        assert (out - per_frame[t]).abs().max() > 0.1


def test_training_supervises_the_middle_frame_of_clips_of_three_and_five():
    model_2d, model_3d = _models()
    for model in (model_2d, model_3d):
        model.train()
        for m in model.modules():  # batch statistics would mix the frames: use running ones
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eval()
    for length in (3, 5):
        clips = _clips(2, length, seed=length)
        losses_3d = model_3d(clips)
        for t in range(length):
            frames = [dict(_frame(c, t), sem_seg=c["sem_seg"]) for c in clips]
            losses_2d = model_2d(frames)
            for name in ("loss_sem_seg", "loss_sem_seg_aux", "loss_ccl"):
                difference = abs(losses_3d[name].item() - losses_2d[name].item())
                if t == length // 2:
                    # The same frames in the same batch of 2: measured 0; 1e-6 = float32 eps x loss ~5.
                    assert difference < 1e-6, (length, t, name)
                else:  # another frame's losses: measured differences 2e-3 to 40
                    assert difference > 1e-4, (length, t, name)


def test_frames_that_do_not_make_clips_are_named():
    _, model_3d = _models()
    head = model_3d.sem_seg_head.eval()
    features = {"res2": torch.zeros(4, 64, 8, 8), "res3": torch.zeros(4, head.context.in_channels, 4, 4)}
    with pytest.raises(ValueError, match="4 frames do not make clips of 3"):
        head(features, clip_length=3)


def test_mirrored_clip_swaps_the_mirrored_classes(tmp_path):
    _, record = write_video_dataset(str(tmp_path))  # frames 0..4 around annotated frame 2, classes 0/1
    plain = VideoClipDatasetMapper(
        augmentations=[], image_format="RGB", clip_length=3, num_classes=2, flip_class_map=[1, 0]
    )(record)
    mirrored = VideoClipDatasetMapper(
        augmentations=[T.RandomFlip(prob=1.0)], image_format="RGB", clip_length=3, num_classes=2, flip_class_map=[1, 0]
    )(record)
    assert plain["image"].shape == (3, 3) + FRAME_SIZE
    assert torch.equal(mirrored["image"], plain["image"].flip(-1))  # every frame mirrored
    assert torch.equal(mirrored["sem_seg"], 1 - plain["sem_seg"].flip(-1))  # mirrored, classes 0 <-> 1
    assert 0 < plain["sem_seg"].float().mean() < 1  # both classes present

    unmapped = VideoClipDatasetMapper(
        augmentations=[T.RandomFlip(prob=1.0)], image_format="RGB", clip_length=3, num_classes=2
    )(record)
    assert torch.equal(unmapped["sem_seg"], plain["sem_seg"].flip(-1))  # no map: only mirrored


@pytest.mark.parametrize("stride", [0, -1])
def test_frame_stride_below_one_is_named(stride):
    with pytest.raises(ValueError, match=f"INPUT.CLIP.FRAME_STRIDE must be >= 1, got {stride}"):
        VideoClipDatasetMapper(augmentations=[], image_format="RGB", clip_length=3, frame_stride=stride, num_classes=2)


def test_clip_length_must_be_odd_and_positive():
    for length in (0, -1, 2):
        with pytest.raises(ValueError, match=f"INPUT.CLIP.LENGTH must be odd and positive .* got {length}"):
            VideoClipDatasetMapper(augmentations=[], image_format="RGB", clip_length=length, num_classes=2)


def test_clip_mapper_leaves_the_dataset_dict_alone_and_types_the_label(tmp_path):
    _, record = write_video_dataset(str(tmp_path))
    mapper = VideoClipDatasetMapper(augmentations=[], image_format="RGB", clip_length=3, num_classes=2)
    first, second = mapper(record), mapper(record)  # the dataset's dict must be usable again
    assert "sem_seg_file_name" in record and torch.equal(first["sem_seg"], second["sem_seg"])
    assert first["sem_seg"].dtype == torch.long
    unlabelled = {k: v for k, v in record.items() if k != "sem_seg_file_name"}
    assert "sem_seg" not in mapper(unlabelled)  # inference: frames only


def test_clip_mapper_from_config_uses_the_train_or_test_augmentations():
    from ccnet.data import build_dataset_mapper
    from ccnet.engine.cli import build_config

    cfg = build_config("", ["INPUT.DATASET_MAPPER_NAME", "VideoClipDatasetMapper", "INPUT.CLIP.LENGTH", 3,
                            "INPUT.CLIP.FRAME_STRIDE", 2, "INPUT.MIN_SIZE_TRAIN", (16,), "INPUT.MIN_SIZE_TEST", 24])
    train, test = build_dataset_mapper(cfg, True), build_dataset_mapper(cfg, False)
    assert (train.clip_length, train.frame_stride) == (3, 2)
    assert any(isinstance(a, T.RandomFlip) for a in train.augmentations.augs)
    assert not any(isinstance(a, T.RandomFlip) for a in test.augmentations.augs)
