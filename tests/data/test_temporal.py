"""The synthetic temporal-context dataset: on-disk layout, and the cue seen in one frame only."""
import json
import os

import cv2
import numpy as np
import pytest

from ccnet.data.datasets.temporal import CLASSES, TemporalSpec, generate_temporal, load_temporal
from detectron2.data import MetadataCatalog

SPEC = TemporalSpec(num_clips=12, seed=5, image_size=32, min_object_size=6, max_object_size=9)


def _read_rgb(path):
    return cv2.imread(path)[:, :, ::-1].astype(int)


def _coloured(frame):
    """Pixels that are not grey (R, G, B differ by more than noise): only cue-frame squares."""
    return (np.abs(frame[..., 0] - frame[..., 1]) > 60) | (np.abs(frame[..., 1] - frame[..., 2]) > 60)


@pytest.fixture(scope="module")
def dicts(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("temporal"))
    return root, load_temporal(root, "train", SPEC)


def test_layout_and_dataset_dicts(dicts):
    root, records = dicts
    assert len(records) == SPEC.num_clips
    mid = SPEC.clip_length // 2
    for record in records:
        clip = record["sequence"]
        assert record["file_name"] == os.path.join(root, "temporal", "images", "train", f"{clip}_{mid:06d}.png")
        assert record["sem_seg_file_name"] == os.path.join(root, "temporal", "labels", "train", f"{clip}_{mid:06d}.png")
        assert (record["frame_number"], record["sequence_frames"]) == (mid, (0, SPEC.clip_length - 1))
        frames = sorted(os.listdir(os.path.join(root, "temporal", "sequences", clip)))
        assert frames == [f"{clip}_{t:06d}.png" for t in range(SPEC.clip_length)]
        np.testing.assert_array_equal(_read_rgb(record["file_name"]), _read_rgb(record["frame_file_format"].format(mid)))


def test_class_is_visible_in_the_cue_frame_only(dicts):
    root, records = dicts
    with open(os.path.join(root, "temporal", "train.json")) as f:
        cue_frames = {c["clip"]: c["cue_frame"] for c in json.load(f)["clips"]}
    red, green = CLASSES.index("object_red"), CLASSES.index("object_green")
    for record in records:
        frames = [_read_rgb(record["frame_file_format"].format(t)) for t in range(SPEC.clip_length)]
        label = cv2.imread(record["sem_seg_file_name"], cv2.IMREAD_UNCHANGED)
        assert set(np.unique(label)) <= set(range(len(CLASSES)))
        coloured = [bool(_coloured(f).any()) for f in frames]
        cue = cue_frames[record["sequence"]]
        assert coloured == [t == cue for t in range(SPEC.clip_length)]
        assert cue != record["frame_number"]  # the annotated frame never shows the cue
        # Squares of both classes look the same (grey) in the annotated frame ...
        annotated = frames[record["frame_number"]]
        squares = (label == red) | (label == green)
        assert (annotated[squares].max(axis=1) - annotated[squares].min(axis=1)).max() < 40
        # ... and the cue frame shows each class's colour near where its squares are.
        cue_rgb = frames[cue]
        for cls, channel in ((red, 0), (green, 1)):
            mask = cv2.dilate((label == cls).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
            has_colour = (cue_rgb[..., channel] - cue_rgb.min(axis=2) > 100) & mask
            assert has_colour.any() == (label == cls).any()


def test_generation_is_deterministic_and_cached(dicts, tmp_path):
    root, records = dicts
    json_file = os.path.join(root, "temporal", "train.json")
    written_at = os.stat(json_file).st_mtime_ns
    assert generate_temporal(root, "train", SPEC) == json_file
    assert os.stat(json_file).st_mtime_ns == written_at  # same spec on disk: not regenerated
    load_temporal(str(tmp_path), "train", SPEC)
    for record in records[:3]:
        other = record["file_name"].replace(root, str(tmp_path))
        np.testing.assert_array_equal(_read_rgb(record["file_name"]), _read_rgb(other))


def test_registered():
    metadata = MetadataCatalog.get("temporal_video_train")
    assert metadata.evaluator_type == "sem_seg"
    assert metadata.generated_on_first_use
    assert metadata.stuff_classes == list(CLASSES)
