"""The synthetic long-range dataset: files, labels, and the cue placement rules."""
import dataclasses
import filecmp
import os

import cv2
import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from ccnet.data.datasets.long_range import SPLITS, draw_long_range_image, generate_long_range, load_long_range

SPEC = dataclasses.replace(SPLITS["val"], num_images=40, seed=7)
FEATURE_STRIDE = 4  # of the benchmark's configs (res2)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("datasets"))
    return root, load_long_range(root, "val", SPEC)


def _rows(box):
    return set(range(box[1], box[3]))


def _cols(box):
    return set(range(box[0], box[2]))


def _distance(a: set, b: set) -> int:
    """Smallest |i - j| over i in a, j in b (0 when they share an index)."""
    return min(abs(i - j) for i in a for j in b)


def test_files_and_labels(dataset):
    root, dicts = dataset
    assert len(dicts) == SPEC.num_images
    for d in dicts:
        image = cv2.imread(d["file_name"], cv2.IMREAD_UNCHANGED)[:, :, ::-1]
        label = cv2.imread(d["sem_seg_file_name"], cv2.IMREAD_UNCHANGED)
        assert image.shape == (SPEC.image_size, SPEC.image_size, 3) and label.dtype == np.uint8
        assert label.shape == image.shape[:2] == (d["height"], d["width"])
        expected = np.zeros_like(label)  # background 0, cues 1 + colour, objects 4 + colour
        x0, y0, x1, y1 = d["cue"]["bbox"]
        cue_rgb = image[y0:y1, x0:x1].reshape(-1, 3)
        colour = int(np.argmax(cue_rgb.mean(0)))  # the bright channel: red, green or blue
        assert cue_rgb[:, colour].min() >= 180 and np.delete(cue_rgb, colour, axis=1).max() <= 60
        expected[y0:y1, x0:x1] = 1 + colour
        assert d["cue"]["category_id"] == 1 + colour
        for obj in d["objects"]:
            assert obj["category_id"] == 4 + colour
            x0, y0, x1, y1 = obj["bbox"]
            expected[y0:y1, x0:x1] = obj["category_id"]
            pixels = image[y0:y1, x0:x1].reshape(-1, 3).astype(int)
            assert (pixels == pixels[0]).all() and len(set(pixels[0])) == 1  # one flat grey, any class
        np.testing.assert_array_equal(label, expected)


def test_cue_placement_rules(dataset):
    _, dicts = dataset
    for d in dicts:
        cue = d["cue"]["bbox"]
        boxes = [obj["bbox"] for obj in d["objects"]]
        assert 1 <= len(boxes) <= SPEC.max_objects
        for obj in d["objects"]:
            box = obj["bbox"]
            row_distance = _distance(_rows(box), _rows(cue))
            col_distance = _distance(_cols(box), _cols(cue))
            # Beyond a small network's reach: more than min_gap pixels away along some axis.
            assert max(row_distance, col_distance) > SPEC.min_gap
            feature_rows = {r // FEATURE_STRIDE for r in _rows(box)} & {r // FEATURE_STRIDE for r in _rows(cue)}
            feature_cols = {c // FEATURE_STRIDE for c in _cols(box)} & {c // FEATURE_STRIDE for c in _cols(cue)}
            if obj["aligned"]:  # shares min_overlap rows (or columns), far along the other axis
                shared = max(len(_rows(box) & _rows(cue)), len(_cols(box) & _cols(cue)))
                assert shared >= SPEC.min_overlap
            else:  # neither rows nor columns, at the pixel or the feature resolution
                assert min(row_distance, col_distance) > SPEC.min_gap
                assert not feature_rows and not feature_cols
        for i, a in enumerate(boxes):  # objects do not touch
            for b in boxes[i + 1 :]:
                assert max(_distance(_rows(a), _rows(b)), _distance(_cols(a), _cols(b))) > SPEC.min_object_spacing


def test_both_kinds_of_objects_and_all_colours_are_common():
    records = [draw_long_range_image(SPLITS["val"], i)[2] for i in range(200)]
    objects = [obj for r in records for obj in r["objects"]]
    aligned = np.mean([obj["aligned"] for obj in objects])
    assert 0.35 < aligned < 0.65
    colours = np.bincount([obj["category_id"] for obj in objects], minlength=7)[4:] / len(objects)
    assert (colours > 0.2).all()


def test_generation_is_deterministic_and_redone_for_a_new_spec(dataset, tmp_path):
    root, dicts = dataset
    generate_long_range(str(tmp_path), "val", SPEC)
    for d in dicts[:10]:
        for key in ("file_name", "sem_seg_file_name"):
            other = os.path.join(str(tmp_path), os.path.relpath(d[key], root))
            assert filecmp.cmp(d[key], other, shallow=False)
    smaller = dataclasses.replace(SPEC, num_images=3)
    assert len(load_long_range(str(tmp_path), "val", smaller)) == 3


def test_registered_like_a_real_dataset():
    for split in ("train", "val"):
        name = f"long_range_sem_seg_{split}"
        assert name in DatasetCatalog.list()
        metadata = MetadataCatalog.get(name)
        assert metadata.evaluator_type == "sem_seg" and metadata.ignore_label == 255
        assert metadata.stuff_classes == [
            "background", "cue_red", "cue_green", "cue_blue", "object_red", "object_green", "object_blue"
        ]  # fmt: skip
        assert metadata.cue_dependent_classes == [4, 5, 6]
        assert metadata.generated_on_first_use
