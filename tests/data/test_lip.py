"""lip_sem_seg_* registration and the SemSegDatasetMapper on a tiny fake LIP in the official layout."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

from ccnet.data import build_dataset_mapper
from ccnet.data.datasets.lip import CLASSES, FLIP_CLASS_MAP, register_lip
from ccnet.data.sem_seg_mapper import SemSegDatasetMapper
from ccnet.engine.cli import build_config
from ccnet.utils.files import datasets_root
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import transforms as T
from tests.conftest import REPO_ROOT
from tests.data.test_prepare_semantic import write_fake_lip, write_png

LIP_CONFIG = os.path.join(REPO_ROOT, "configs", "LIP-SemanticSegmentation", "rcca_r2_R_101_OS8_114k.yaml")


@pytest.fixture
def fake_lip(tmp_path):
    """A fake LIP registered as fake_lip_sem_seg_{train,val}; yields (root, prefix)."""
    root, prefix = str(tmp_path / "LIP"), "fake_lip"
    rng = np.random.default_rng(0)
    write_fake_lip(root, {"train": [rng.integers(0, 20, (8, 10)) for _ in range(2)], "val": [np.zeros((8, 10))]})
    register_lip(root, prefix=prefix)
    yield root, prefix
    for split in ("train", "val"):
        DatasetCatalog.remove(f"{prefix}_sem_seg_{split}")
        MetadataCatalog.remove(f"{prefix}_sem_seg_{split}")


def test_lip_is_registered_under_detectron2_datasets():
    root = os.path.join(datasets_root(), "LIP")
    for split, folder in (("train", "train_segmentations"), ("val", "val_segmentations")):
        metadata = MetadataCatalog.get(f"lip_sem_seg_{split}")
        assert metadata.sem_seg_root == os.path.join(root, "TrainVal_parsing_annotations", folder)
        assert len(metadata.stuff_classes) == 20 and metadata.evaluator_type == "sem_seg"


def test_lip_registration_reads_the_official_layout(fake_lip):
    root, prefix = fake_lip
    records = DatasetCatalog.get(f"{prefix}_sem_seg_train")
    assert sorted(os.path.basename(r["file_name"]) for r in records) == ["1_train.jpg", "2_train.jpg"]
    assert all(os.path.isfile(r["sem_seg_file_name"]) for r in records)
    assert MetadataCatalog.get(f"{prefix}_sem_seg_val").stuff_classes == list(CLASSES)


def test_lip_flip_class_map_swaps_left_and_right():
    swapped = {CLASSES[c]: CLASSES[FLIP_CLASS_MAP[c]] for c in range(20) if FLIP_CLASS_MAP[c] != c}
    assert swapped == {
        "Left-arm": "Right-arm", "Right-arm": "Left-arm", "Left-leg": "Right-leg",
        "Right-leg": "Left-leg", "Left-shoe": "Right-shoe", "Right-shoe": "Left-shoe",
    }  # fmt: skip


def _record(tmp_path, label, image_size=None):
    image_size = image_size or np.shape(label)
    image_file, label_file = str(tmp_path / "image.jpg"), str(tmp_path / "label.png")
    Image.fromarray(np.zeros(tuple(image_size) + (3,), np.uint8)).save(image_file)
    write_png(label_file, label)
    return {"file_name": image_file, "sem_seg_file_name": label_file}


def _mapper(augmentations, flip_class_map=None):
    return SemSegDatasetMapper(
        augmentations=augmentations, image_format="RGB", num_classes=20, ignore_label=255, flip_class_map=flip_class_map
    )


def test_mirroring_swaps_the_mirrored_classes(tmp_path):
    record = _record(tmp_path, [[14, 0, 16], [18, 1, 255]])
    mirrored = _mapper([T.RandomFlip(prob=1.0)], FLIP_CLASS_MAP)(record)["sem_seg"]
    assert mirrored.tolist() == [[17, 0, 15], [255, 1, 19]]
    unchanged = _mapper([T.RandomFlip(prob=1.0)])(record)["sem_seg"]
    assert unchanged.tolist() == [[16, 0, 14], [255, 1, 18]]


def test_label_map_of_another_size_is_an_error_naming_the_file(tmp_path):
    record = _record(tmp_path, np.zeros((4, 3)), image_size=(3, 3))
    with pytest.raises(ValueError, match=r"label map .*label\.png is 3x4 \(WxH\) but its image is 3x3"):
        _mapper([])(record)


def test_label_outside_the_classes_is_an_error_naming_the_file(tmp_path):
    with pytest.raises(ValueError, match=r"label map .*label\.png has values \[20, 254\]"):
        _mapper([])(_record(tmp_path, [[0, 20], [254, 255]]))
    assert _mapper([])(_record(tmp_path, [[0, 19], [255, 255]]))["sem_seg"].tolist() == [[0, 19], [255, 255]]


def test_mapper_from_the_lip_config_crops_and_keeps_valid_labels(fake_lip):
    _, prefix = fake_lip
    cfg = build_config(
        LIP_CONFIG,
        [
            "DATASETS.TRAIN", f"('{prefix}_sem_seg_train',)", "DATASETS.TEST", f"('{prefix}_sem_seg_val',)",
            "INPUT.MIN_SIZE_TRAIN", "(8, 12)", "INPUT.CROP.SIZE", "(5, 6)", "INPUT.MIN_SIZE_TEST", "0",
        ],
    )  # fmt: skip
    mapper = build_dataset_mapper(cfg, is_train=True)
    assert isinstance(mapper.mapper, SemSegDatasetMapper) and mapper.flip_class_map == FLIP_CLASS_MAP
    for record in DatasetCatalog.get(f"{prefix}_sem_seg_train"):
        out = mapper(record)
        assert out["image"].shape == (3, 5, 6) and out["image"].dtype == torch.uint8
        assert out["sem_seg"].shape == (5, 6) and int(out["sem_seg"].max()) < 20
    (val_record,) = DatasetCatalog.get(f"{prefix}_sem_seg_val")
    out = build_dataset_mapper(cfg, is_train=False)(val_record)
    assert out["image"].shape == (3, 8, 10) and (out["height"], out["width"]) == (8, 10)
