"""The synthetic temporal-context dataset: on-disk layout, and a square's class seen in one frame only."""
import json
import os

import cv2
import numpy as np
import pytest

from ccnet.data.datasets.temporal import CLASSES, KINDS, TemporalSpec, generate_temporal, load_temporal
from detectron2.data import MetadataCatalog

SPEC = TemporalSpec(num_clips=12, seed=5)
RED, GREEN = CLASSES.index("red"), CLASSES.index("green")
DISC, SQUARE = KINDS.index("disc"), KINDS.index("square")


def _read_rgb(path):
    return cv2.imread(path)[:, :, ::-1].astype(int)


def _coloured(frame, channel):
    """Pixels where ``channel`` (0 red, 1 green) clearly dominates: the class colours."""
    return frame[..., channel] - np.delete(frame, channel, axis=2).max(axis=2) > 100


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
        stem = f"{clip}_{mid:06d}.png"
        assert record["file_name"] == os.path.join(root, "temporal", "images", "train", stem)
        assert record["sem_seg_file_name"] == os.path.join(root, "temporal", "labels", "train", stem)
        assert record["kind_file_name"] == os.path.join(root, "temporal", "kinds", "train", stem)
        assert (record["frame_number"], record["sequence_frames"]) == (mid, (0, SPEC.clip_length - 1))
        frames = sorted(os.listdir(os.path.join(root, "temporal", "sequences", clip)))
        assert frames == [f"{clip}_{t:06d}.png" for t in range(SPEC.clip_length)]
        np.testing.assert_array_equal(_read_rgb(record["file_name"]), _read_rgb(record["frame_file_format"].format(mid)))


def test_square_class_shows_in_the_cue_frame_only(dicts):
    root, records = dicts
    with open(os.path.join(root, "temporal", "train.json")) as f:
        cue_frames = {c["clip"]: c["cue_frame"] for c in json.load(f)["clips"]}
    checked = 0
    for record in records:
        frames = [_read_rgb(record["frame_file_format"].format(t)) for t in range(SPEC.clip_length)]
        label = cv2.imread(record["sem_seg_file_name"], cv2.IMREAD_UNCHANGED)
        kinds = cv2.imread(record["kind_file_name"], cv2.IMREAD_UNCHANGED)
        assert set(np.unique(label)) <= set(range(len(CLASSES)))
        assert ((label > 0) == (kinds > 0)).all()  # every object pixel is a disc or a square
        cue, mid = cue_frames[record["sequence"]], record["frame_number"]
        assert cue != mid  # the annotated frame never shows a square's class
        annotated = frames[mid]
        squares = kinds == SQUARE
        assert squares.any()
        # Squares are grey in the annotated frame, whatever their class ...
        assert (annotated[squares].max(axis=1) - annotated[squares].min(axis=1)).max() < 40
        # ... discs show their class colour there ...
        for cls, channel in ((RED, 0), (GREEN, 1)):
            discs = (kinds == DISC) & (label == cls)
            # > 90% of disc pixels coloured: only anti-aliased rims may differ (a wrong frame: ~0%).
            assert _coloured(annotated, channel)[discs].mean() > 0.9 if discs.any() else True
        # ... and inside its squares (eroded by the drift), only the cue frame shows a square class's colour.
        for cls, channel in ((RED, 0), (GREEN, 1)):
            inside = cv2.erode((squares & (label == cls)).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
            for t, frame in enumerate(frames):
                if inside.any():
                    checked += 1
                    assert _coloured(frame, channel)[inside].all() == (t == cue), (record["sequence"], t, cls)
                    assert not _coloured(frame, 1 - channel)[inside].any()
    assert checked >= SPEC.num_clips * SPEC.clip_length  # at least one square per clip was checked


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
    assert metadata.object_kinds == list(KINDS)
