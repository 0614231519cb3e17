"""datasets/prepare_{cityscapes,ade20k,lip}.py and the registrations that read their output,
on tiny fake datasets written in the official layouts."""
import importlib.util
import json
import os
import shutil
import zipfile

import numpy as np
import pytest
from PIL import Image

from detectron2.data import MetadataCatalog
from detectron2.data.datasets import load_sem_seg
from detectron2.data.datasets.cityscapes import load_cityscapes_semantic
from tests.conftest import REPO_ROOT

# Where Detectron2 registered its builtin datasets: it reads the variable as it is (no "~" expanded).
BUILTIN_ROOT = os.getenv("DETECTRON2_DATASETS", "datasets")


def load_prepare_script(name):
    path = os.path.join(REPO_ROOT, "datasets", f"prepare_{name}.py")
    spec = importlib.util.spec_from_file_location(f"prepare_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_png(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)


def relative_to_builtin_root(path):
    return os.path.relpath(path, BUILTIN_ROOT)


# ------------------------------------------------------------------------------- Cityscapes

# (label ID, train ID) from the Cityscapes label table, written out by hand.
CITYSCAPES_CASES = [(7, 0), (8, 1), (11, 2), (24, 11), (26, 13), (33, 18), (0, 255), (1, 255), (4, 255), (9, 255)]


def _write_fake_cityscapes(root, split, city, frame):
    stem = f"{city}_000000_{frame:06d}"
    label_ids = np.array([[label_id for label_id, _ in CITYSCAPES_CASES]] * 4, dtype=np.uint8)  # 4 x 10
    write_png(os.path.join(root, "leftImg8bit", split, city, f"{stem}_leftImg8bit.png"), np.zeros((4, 10, 3)))
    gt = os.path.join(root, "gtFine", split, city, stem)
    write_png(f"{gt}_gtFine_labelIds.png", label_ids)
    write_png(f"{gt}_gtFine_instanceIds.png", label_ids)
    with open(f"{gt}_gtFine_polygons.json", "w") as f:
        json.dump({"imgHeight": 4, "imgWidth": 10, "objects": []}, f)


def test_prepare_cityscapes_writes_train_ids_read_by_the_builtin_registration(tmp_path):
    root = str(tmp_path / "cityscapes")
    _write_fake_cityscapes(root, "train", "aachen", 19)
    _write_fake_cityscapes(root, "val", "frankfurt", 1)
    load_prepare_script("cityscapes").main(["--root", root, "--workers", "1"])

    expected = np.array([[train_id for _, train_id in CITYSCAPES_CASES]] * 4)
    for split in ("train", "val"):
        metadata = MetadataCatalog.get(f"cityscapes_fine_sem_seg_{split}")
        image_dir = os.path.join(str(tmp_path), relative_to_builtin_root(metadata.image_dir))
        gt_dir = os.path.join(str(tmp_path), relative_to_builtin_root(metadata.gt_dir))
        (record,) = load_cityscapes_semantic(image_dir, gt_dir)
        assert record["sem_seg_file_name"].endswith("_gtFine_labelTrainIds.png")
        np.testing.assert_array_equal(np.asarray(Image.open(record["sem_seg_file_name"])), expected)
        assert (record["height"], record["width"]) == (4, 10)


def test_prepare_cityscapes_without_data_names_the_folder(tmp_path):
    with pytest.raises(SystemExit, match="gtFine"):
        load_prepare_script("cityscapes").main(["--root", str(tmp_path / "nothing"), "--workers", "1"])


# ----------------------------------------------------------------------------------- ADE20K


def _write_fake_ade20k(dataset, split, name, label):
    write_png(os.path.join(dataset, "annotations", split, f"{name}.png"), label)
    image = os.path.join(dataset, "images", split, f"{name}.jpg")
    os.makedirs(os.path.dirname(image), exist_ok=True)
    Image.fromarray(np.zeros(label.shape + (3,), np.uint8)).save(image)


@pytest.mark.parametrize("zipped", [False, True])
def test_prepare_ade20k_shifts_labels_for_the_builtin_registration(tmp_path, zipped):
    dataset = str(tmp_path / "ADEChallengeData2016")
    label = np.array([[0, 1, 2], [150, 75, 0]], dtype=np.uint8)  # 0 = "other"
    _write_fake_ade20k(dataset, "training", "ADE_train_00000001", label)
    _write_fake_ade20k(dataset, "validation", "ADE_val_00000001", label)
    if zipped:
        shutil.make_archive(dataset, "zip", str(tmp_path), "ADEChallengeData2016")
        shutil.rmtree(dataset)
        assert zipfile.is_zipfile(dataset + ".zip")
    load_prepare_script("ade20k").main(["--root", str(tmp_path)])

    for split in ("train", "val"):
        metadata = MetadataCatalog.get(f"ade20k_sem_seg_{split}")
        gt_dir = os.path.join(str(tmp_path), relative_to_builtin_root(metadata.sem_seg_root))
        image_dir = os.path.join(str(tmp_path), relative_to_builtin_root(metadata.image_root))
        (record,) = load_sem_seg(gt_dir, image_dir, gt_ext="png", image_ext="jpg")
        shifted = np.asarray(Image.open(record["sem_seg_file_name"]))
        np.testing.assert_array_equal(shifted, [[255, 0, 1], [149, 74, 255]])
        assert len(metadata.stuff_classes) == 150


# -------------------------------------------------------------------------------------- LIP


def write_fake_lip(root, labels_by_split, nested=False):
    """LIP's official folders (optionally with the extra level some extractions add)."""
    for split, labels in labels_by_split.items():
        images = os.path.join(root, "TrainVal_images", f"{split}_images")
        annotations = os.path.join(root, "TrainVal_parsing_annotations")
        if nested:
            annotations = os.path.join(annotations, "TrainVal_parsing_annotations")
        for i, label in enumerate(labels):
            name = f"{i + 1}_{split}"
            write_png(os.path.join(annotations, f"{split}_segmentations", f"{name}.png"), label)
            os.makedirs(images, exist_ok=True)
            Image.fromarray(np.full(np.shape(label) + (3,), 40 * i, np.uint8)).save(os.path.join(images, f"{name}.jpg"))


def test_prepare_lip_arranges_nested_folders_and_accepts_valid_labels(tmp_path):
    root = str(tmp_path / "LIP")
    label = np.array([[0, 14, 15], [19, 2, 255]])
    write_fake_lip(root, {"train": [label, label], "val": [label]}, nested=True)
    load_prepare_script("lip").main(["--root", root])
    assert os.path.isdir(os.path.join(root, "TrainVal_parsing_annotations", "val_segmentations"))
    assert len(os.listdir(os.path.join(root, "TrainVal_parsing_annotations", "train_segmentations"))) == 2


def test_prepare_lip_extracts_the_archives(tmp_path):
    source = str(tmp_path / "source")
    write_fake_lip(source, {"train": [np.zeros((3, 3))], "val": [np.ones((3, 3))]})
    root = str(tmp_path / "LIP")
    os.makedirs(root)
    for folder in ("TrainVal_images", "TrainVal_parsing_annotations"):
        shutil.make_archive(os.path.join(root, folder), "zip", source, folder)
    load_prepare_script("lip").main(["--root", root])
    assert os.listdir(os.path.join(root, "TrainVal_images", "val_images")) == ["1_val.jpg"]


def test_prepare_lip_names_bad_label_maps(tmp_path, capsys):
    root = str(tmp_path / "LIP")
    write_fake_lip(root, {"train": [np.zeros((3, 3)), np.full((3, 3), 20)], "val": [np.zeros((3, 3))]})
    write_png(os.path.join(root, "TrainVal_parsing_annotations", "val_segmentations", "1_val.png"), np.zeros((4, 3)))
    with pytest.raises(SystemExit) as exit_info:
        load_prepare_script("lip").main(["--root", root])
    assert exit_info.value.code == 1
    errors = capsys.readouterr().err
    assert "2_train.png has values [20]" in errors
    assert "1_val.png is 3x4 (WxH) but its image is 3x3" in errors
