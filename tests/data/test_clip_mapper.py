"""VideoClipDatasetMapper: clips around annotated frames, edge padding, one augmentation for all frames."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

from ccnet.config import add_ccnet_config
from ccnet.data import build_dataset_mapper
from ccnet.data.clip_mapper import VideoClipDatasetMapper, clip_frame_numbers
from ccnet.data.datasets.video import load_video_sem_seg
from detectron2.config import get_cfg
from detectron2.data import transforms as T

SIZE = (32, 40)  # H, W


def _base_frame(seed=0):
    """Grey levels 60 (class 0) or 120 (class 1) in 8x8 blocks, and the matching label."""
    blocks = np.random.default_rng(seed).integers(0, 2, size=(SIZE[0] // 8, SIZE[1] // 8))
    label = np.kron(blocks, np.ones((8, 8), dtype=np.int64)).astype(np.uint8)
    return np.repeat((60 + 60 * label)[:, :, None], 3, axis=2).astype(np.uint8), label


def write_video_dataset(root, sequence="seqA", num_frames=5, annotated=(0, 2), sizes=None):
    """The on-disk video layout: frame t of ``sequence`` is the base frame + 10 * t (all channels).

    ``sizes`` maps a frame number to a different (H, W) for that frame.
    """
    base, label = _base_frame()
    for folder in ("images/train", "labels/train", f"sequences/{sequence}"):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
    for t in range(num_frames):
        frame = base + 10 * t
        if sizes and t in sizes:
            frame = np.zeros(sizes[t] + (3,), np.uint8)
        Image.fromarray(frame).save(os.path.join(root, "sequences", sequence, f"{sequence}_f{t:03d}.png"))
        if t in annotated:
            Image.fromarray(frame).save(os.path.join(root, "images/train", f"{sequence}_f{t:03d}.png"))
            Image.fromarray(label).save(os.path.join(root, "labels/train", f"{sequence}_f{t:03d}.png"))
    return load_video_sem_seg(*(os.path.join(root, d) for d in ("images/train", "labels/train", "sequences")))


def _mapper(clip_length, augmentations=(), frame_stride=1):
    return VideoClipDatasetMapper(
        augmentations=list(augmentations),
        image_format="RGB",
        clip_length=clip_length,
        frame_stride=frame_stride,
        num_classes=2,
    )


def test_clip_frame_numbers_repeat_the_edge_frames():
    assert clip_frame_numbers(5, 3, 9, length=5) == [3, 4, 5, 6, 7]
    assert clip_frame_numbers(3, 3, 9, length=5) == [3, 3, 3, 4, 5]
    assert clip_frame_numbers(9, 3, 9, length=5) == [7, 8, 9, 9, 9]
    assert clip_frame_numbers(5, 3, 9, length=5, stride=2) == [3, 3, 5, 7, 9]
    assert clip_frame_numbers(4, 4, 4, length=3) == [4, 4, 4]
    assert clip_frame_numbers(4, 0, 9, length=1) == [4]


def test_clip_is_read_around_the_annotated_frame_with_edge_padding(tmp_path):
    first, middle = write_video_dataset(str(tmp_path))
    out = _mapper(5)(first)  # annotated frame 0: the sequence starts there
    names = [os.path.basename(f) for f in out["clip_file_names"]]
    assert names == ["seqA_f000.png"] * 3 + ["seqA_f001.png", "seqA_f002.png"]
    assert out["clip_file_names"][2] == first["file_name"]  # the annotated frame itself
    assert out["image"].shape == (5, 3) + SIZE and out["image"].dtype == torch.uint8
    levels = out["image"][:, 0, 0, 0].tolist()
    assert [v - levels[0] for v in levels] == [0, 0, 0, 10, 20]
    assert out["sem_seg"].shape == SIZE and (out["height"], out["width"]) == SIZE

    out = _mapper(3, frame_stride=2)(middle)  # annotated frame 2, frames 0 and 4 around it
    assert [os.path.basename(f)[-7:-4] for f in out["clip_file_names"]] == ["000", "002", "004"]


def test_one_augmentation_for_every_frame(tmp_path):
    _, record = write_video_dataset(str(tmp_path))
    augmentations = [
        T.ResizeShortestEdge((24, 40, 48), max_size=1000, sample_style="choice"),
        T.RandomCrop("absolute", (20, 24)),
        T.RandomFlip(),
    ]
    mapper = _mapper(5, augmentations)
    for seed in range(8):
        np.random.seed(seed)
        out = mapper(record)
        clip = out["image"].int()
        # Every frame is the annotated frame + 10 * (t - 2) at every pixel: same resize, crop, flip.
        for t in range(5):
            assert (clip[t] - clip[2] - 10 * (t - 2)).abs().max() <= 1, f"seed {seed}, frame {t}"
        # The label went through the same transforms as the frames.
        bright = clip[2, 0] > 110  # the annotated frame 2: class 0 is grey 80, class 1 is 140
        agreement = (bright == (out["sem_seg"] == 1)).float().mean()
        # Resizing blurs block edges only (a mis-aligned label agrees on ~50%).
        assert agreement > 0.9, f"seed {seed}: label and frame disagree on {1 - agreement:.0%} of pixels"
        assert clip.shape[-2:] == (20, 24)


def test_frames_of_different_sizes_name_the_sequence(tmp_path):
    _, record = write_video_dataset(str(tmp_path), sequence="0016E5", sizes={3: (SIZE[0], SIZE[1] + 8)})
    with pytest.raises(ValueError, match=r"sequence '0016E5'.*0016E5_f003\.png"):
        _mapper(3)(record)  # frames 1, 2, 3 around the annotated frame 2


def test_label_value_outside_the_classes_names_the_file(tmp_path):
    _, record = write_video_dataset(str(tmp_path))
    Image.fromarray(np.full(SIZE, 7, np.uint8)).save(record["sem_seg_file_name"])
    with pytest.raises(ValueError, match=r"seqA_f002\.png has values \[7\]"):
        _mapper(3)(record)


def test_single_images_need_clip_length_one(tmp_path):
    _, record = write_video_dataset(str(tmp_path))
    image_only = {"file_name": record["file_name"], "sem_seg_file_name": record["sem_seg_file_name"]}
    assert _mapper(1)(image_only)["image"].shape == (1, 3) + SIZE
    with pytest.raises(ValueError, match="seqA_f002.png: no sequence information"):
        _mapper(3)(image_only)


def test_built_from_config(tmp_path):
    _, record = write_video_dataset(str(tmp_path))
    cfg = get_cfg()
    add_ccnet_config(cfg)
    cfg.merge_from_list(
        ["INPUT.DATASET_MAPPER_NAME", "VideoClipDatasetMapper", "INPUT.CLIP.LENGTH", 3, "INPUT.FORMAT", "RGB",
         "INPUT.MIN_SIZE_TRAIN", (16,), "INPUT.MIN_SIZE_TEST", 16, "MODEL.SEM_SEG_HEAD.NUM_CLASSES", 2]
    )  # fmt: skip
    for is_train in (True, False):
        out = build_dataset_mapper(cfg, is_train)(record)
        assert out["image"].shape == (3, 3, 16, 20)
        assert (out["height"], out["width"]) == SIZE
    cfg.INPUT.CLIP.LENGTH = 4
    with pytest.raises(ValueError, match="INPUT.CLIP.LENGTH must be odd"):
        build_dataset_mapper(cfg, True)
