"""datasets/prepare_camvid.py and the camvid_* registrations, on a tiny fake CamVid in the official layout."""
import importlib.util
import os

import cv2
import numpy as np
import pytest

from ccnet.data.datasets.camvid import register_camvid
from detectron2.data import DatasetCatalog, MetadataCatalog
from tests.conftest import REPO_ROOT

H, W = 48, 64
OFFSET = 100  # still 0001TP_000105 is frame 5 of the fake 01TP_extract.avi
VIDEO_FRAMES = 12  # frames 100..111
SPLIT = {"train": ["0001TP_000105"], "val": ["0001TP_000111"], "test": ["Seq05VD_f00003"]}

# A few of CamVid's 32 colours and the 11-class id each must become (written out by hand).
COLOUR_CASES = [
    ((128, 64, 128), 3),  # Road -> Road
    ((128, 0, 192), 3),  # LaneMkgsDriv -> Road
    ((192, 128, 64), 9),  # Child -> Pedestrian
    ((128, 128, 128), 0),  # Sky
    ((64, 192, 0), 1),  # Wall -> Building
    ((0, 0, 0), 255),  # Void
]


def _load_prepare_script():
    spec = importlib.util.spec_from_file_location("prepare_camvid", os.path.join(REPO_ROOT, "datasets", "prepare_camvid.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _frame(seed: int, height: int = H, width: int = W) -> np.ndarray:
    """A distinct smooth BGR frame per seed (smooth, so it survives MJPEG and resizing)."""
    coarse = np.random.default_rng(seed).uniform(0, 255, size=(4, 5, 3)).astype(np.float32)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC).clip(0, 255).astype(np.uint8)


def _write_video(path: str, first_seed: int, count: int, scale: int) -> None:
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 30, (W * scale, H * scale))
    assert writer.isOpened()
    for i in range(count):
        writer.write(_frame(first_seed + i, H * scale, W * scale))
    writer.release()


def _seed(stem: str) -> int:
    """The seed of a frame: its number, so video frame i of 0001TP has seed i + OFFSET."""
    return int(stem.split("_")[1].lstrip("f")) + (0 if stem.startswith("0001TP") else 1000)


def _colour_label() -> np.ndarray:
    label = np.zeros((H, W, 3), np.uint8)  # black: Void
    for i, (rgb, _) in enumerate(COLOUR_CASES):
        label[:, i * 10 : (i + 1) * 10] = rgb
    return label[:, :, ::-1]  # BGR for cv2


def _expected_label() -> np.ndarray:
    expected = np.full((H, W), 255, np.uint8)
    for i, (_, class_id) in enumerate(COLOUR_CASES):
        expected[:, i * 10 : (i + 1) * 10] = class_id
    return expected


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """The official downloads, tiny: SegNet's CamVid folder, the stills, colour labels, videos."""
    root = tmp_path_factory.mktemp("camvid_official")
    segnet, stills, labels, videos = (root / d for d in ("SegNet/CamVid", "701_StillsRaw_full", "LabeledApproved_full", "videos"))
    for folder in (stills, labels, videos):
        folder.mkdir(parents=True)
    for split, stems in SPLIT.items():
        (segnet / split).mkdir(parents=True)
        (segnet / f"{split}annot").mkdir()
        for stem in stems:
            image = _frame(_seed(stem))
            cv2.imwrite(str(stills / f"{stem}.png"), image)
            cv2.imwrite(str(labels / f"{stem}_L.png"), _colour_label())
            cv2.imwrite(str(segnet / split / f"{stem}.png"), image)
            annot = np.full((H, W), 11, np.uint8)  # void
            annot[:, :5] = 4
            cv2.imwrite(str(segnet / f"{split}annot" / f"{stem}.png"), annot)
    _write_video(str(videos / "01TP_extract.avi"), OFFSET, VIDEO_FRAMES, scale=2)  # video at twice the stills' size
    _write_video(str(videos / "Seq05VD.avi"), 1000, 6, scale=1)  # the fallback name for 0005VD.MXF
    return root


@pytest.fixture(scope="module")
def prepared(official, tmp_path_factory):
    out = tmp_path_factory.mktemp("camvid_prepared") / "camvid"
    _load_prepare_script().main(
        [
            "--segnet", str(official / "SegNet/CamVid"),
            "--stills", str(official / "701_StillsRaw_full"),
            "--labels", str(official / "LabeledApproved_full"),
            "--videos", str(official / "videos"),
            "--context", "2",
            "--out", str(out),
        ]
    )  # fmt: skip
    return out


def test_colour_labels_become_11_class_ids(prepared):
    for split, stems in SPLIT.items():
        for stem in stems:
            label = cv2.imread(str(prepared / "labels" / split / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
            np.testing.assert_array_equal(label, _expected_label())
            image = cv2.imread(str(prepared / "images" / split / f"{stem}.png"))
            np.testing.assert_array_equal(image, _frame(_seed(stem)))


def test_video_frames_are_matched_to_the_annotated_frames(prepared):
    sequence = prepared / "sequences" / "0001TP"
    # Within 2 frames of 105 and of 111, where the video ends: 108 is in neither.
    expected = [f"0001TP_{n:06d}.png" for n in list(range(103, 108)) + list(range(109, 112))]
    assert sorted(os.listdir(sequence)) == expected
    for name in expected:
        frame = cv2.imread(str(sequence / name))
        assert frame.shape == (H, W, 3)  # resized to the stills' size
        errors = [np.abs(frame.astype(float) - _frame(seed)).mean() for seed in range(OFFSET, OFFSET + VIDEO_FRAMES)]
        assert int(np.argmin(errors)) + OFFSET == int(name[7:13]), name
    assert sorted(os.listdir(prepared / "sequences" / "Seq05VD")) == [f"Seq05VD_f{n:05d}.png" for n in range(1, 6)]


def test_registration(prepared):
    register_camvid(str(prepared), prefix="fake_camvid")
    try:
        (image,) = DatasetCatalog.get("fake_camvid_sem_seg_train")
        assert image["file_name"] == str(prepared / "images/train/0001TP_000105.png")
        assert image["sem_seg_file_name"] == str(prepared / "labels/train/0001TP_000105.png")
        assert MetadataCatalog.get("fake_camvid_sem_seg_val").evaluator_type == "sem_seg"
        assert len(MetadataCatalog.get("fake_camvid_sem_seg_val").stuff_classes) == 11

        (frame,) = DatasetCatalog.get("fake_camvid_video_val")
        assert (frame["sequence"], frame["frame_number"], frame["sequence_frames"]) == ("0001TP", 111, (109, 111))
        assert frame["frame_file_format"].format(109) == str(prepared / "sequences/0001TP/0001TP_000109.png")
        (frame,) = DatasetCatalog.get("fake_camvid_video_test")
        assert (frame["sequence"], frame["frame_number"], frame["sequence_frames"]) == ("Seq05VD", 3, (1, 5))
        assert frame["frame_file_format"].format(4).endswith("sequences/Seq05VD/Seq05VD_f00004.png")
    finally:
        for split in ("train", "val", "test"):
            for kind in ("sem_seg", "video"):
                DatasetCatalog.remove(f"fake_camvid_{kind}_{split}")
                MetadataCatalog.remove(f"fake_camvid_{kind}_{split}")


def test_segnet_layout_alone(official, tmp_path):
    _load_prepare_script().main(["--segnet", str(official / "SegNet/CamVid"), "--out", str(tmp_path)])
    label = cv2.imread(str(tmp_path / "labels/test/Seq05VD_f00003.png"), cv2.IMREAD_UNCHANGED)
    expected = np.full((H, W), 255, np.uint8)
    expected[:, :5] = 4
    np.testing.assert_array_equal(label, expected)
    assert not (tmp_path / "sequences").exists()


def test_unknown_colour_names_the_file(official, tmp_path):
    labels = tmp_path / "labels"
    labels.mkdir()
    for stems in SPLIT.values():
        for stem in stems:
            label = _colour_label()
            label[3, 3] = (1, 2, 3)
            cv2.imwrite(str(labels / f"{stem}_L.png"), label)
    with pytest.raises(ValueError, match=r"0001TP_000105_L\.png.*colour \(3, 2, 1\)"):
        _load_prepare_script().main(
            ["--segnet", str(official / "SegNet/CamVid"), "--stills", str(official / "701_StillsRaw_full"),
             "--labels", str(labels), "--out", str(tmp_path / "out")]
        )  # fmt: skip


def test_missing_video_names_the_sequence(official, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    with pytest.raises(FileNotFoundError, match="sequence '0001TP'.*01TP_extract.avi"):
        _load_prepare_script().main(
            ["--segnet", str(official / "SegNet/CamVid"), "--videos", str(videos), "--out", str(tmp_path / "out")]
        )
