"""Your own data from config keys: DATASETS.COCO_INSTANCES / DATASETS.SEM_SEG, end to end and bad input."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ccnet.data.datasets.shapes import ShapesSpec, generate_shapes
from ccnet.engine.cli import build_config
from ccnet.engine.trainer import verify_datasets
from tests.conftest import REPO_ROOT
from tests.engine import tiny_semseg

QUICKSTART = os.path.join(REPO_ROOT, "configs", "Quickstart", "mask_rcnn_rcca_shapes.yaml")
SEMANTIC = os.path.join(REPO_ROOT, "configs", "Synthetic-LongRange", "rcca_r2.yaml")
SHORT_RUN = ["SOLVER.MAX_ITER", "2", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.WARMUP_ITERS", "1", "SOLVER.STEPS", "()"]


def coco_dataset(root, split, num_images):
    """A small COCO-format dataset written the way a user has one: (json_file, image_root)."""
    json_file = generate_shapes(str(root), split, ShapesSpec(num_images=num_images, seed=7 if split == "val" else 3))
    return json_file, os.path.join(str(root), "shapes_instances", split)


@pytest.fixture()
def coco(tmp_path):
    return {split: coco_dataset(tmp_path, split, n) for split, n in (("train", 6), ("val", 3))}


def coco_keys(coco, train="mine_train", val="mine_val"):
    entries = [[train, *coco["train"]], [val, *coco["val"]]]
    return ["DATASETS.COCO_INSTANCES", repr(entries), "DATASETS.TRAIN", f"('{train}',)", "DATASETS.TEST", f"('{val}',)"]


@pytest.fixture()
def semantic(tmp_path):
    root = tmp_path / "semantic"
    tiny_semseg.write_dataset(str(root), num_images=4, size=64)
    return {split: (str(root / "images" / split), str(root / "labels" / split)) for split in ("train", "val")}


def semantic_keys(semantic):
    entries = [["seg_train", *semantic["train"]], ["seg_val", *semantic["val"]]]
    return [
        "DATASETS.SEM_SEG", repr(entries), "DATASETS.SEM_SEG_CLASSES", repr(tiny_semseg.CLASSES),
        "DATASETS.SEM_SEG_IMAGE_EXT", ".png", "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "3",
        "DATASETS.TRAIN", "('seg_train',)", "DATASETS.TEST", "('seg_val',)",
    ]  # fmt: skip


def train_net(*args, cwd=REPO_ROOT):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "train_net.py", *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    return result.returncode, result.stdout


def last_metrics(output_dir):
    with open(os.path.join(output_dir, "metrics.json")) as f:
        return [json.loads(line) for line in f][-1]


@pytest.mark.slow
def test_coco_instances_train_and_evaluate_from_the_command_line(coco, tmp_path):
    out = str(tmp_path / "out")
    code, log = train_net("--config-file", QUICKSTART, *coco_keys(coco), *SHORT_RUN, "OUTPUT_DIR", out)
    assert code == 0, log[-4000:]
    row = last_metrics(out)
    assert "bbox/AP" in row and "segm/AP" in row
    # COCOEvaluator evaluated the user's own val JSON: its 3 images, no others.
    with open(os.path.join(out, "inference", "mine_val", "coco_instances_results.json")) as f:
        predicted = {p["image_id"] for p in json.load(f)}
    with open(coco["val"][0]) as f:
        assert predicted <= {image["id"] for image in json.load(f)["images"]}
    # The saved config registers the same datasets again (eval-only, tools/demo.py).
    code, log = train_net("--config-file", os.path.join(out, "config.yaml"), "--eval-only",
                          "MODEL.WEIGHTS", os.path.join(out, "model_final.pth"), "OUTPUT_DIR", str(tmp_path / "eval"))  # fmt: skip
    assert code == 0, log[-4000:]
    assert "segm/AP" in last_metrics(str(tmp_path / "eval"))


@pytest.mark.slow
def test_semantic_folders_train_and_evaluate_from_the_command_line(semantic, tmp_path):
    out = str(tmp_path / "out")
    code, log = train_net("--config-file", SEMANTIC, *semantic_keys(semantic), *SHORT_RUN, "OUTPUT_DIR", out)
    assert code == 0, log[-4000:]
    row = last_metrics(out)
    assert "sem_seg/mIoU" in row
    assert {f"sem_seg/IoU-{name}" for name in tiny_semseg.CLASSES} <= set(row)  # SemSegEvaluator, our classes


def test_bad_input_stops_train_net_before_training(coco, tmp_path):
    os.remove(os.path.join(coco["train"][1], "000002.png"))
    out = str(tmp_path / "out")
    code, log = train_net("--config-file", QUICKSTART, *coco_keys(coco), *SHORT_RUN, "OUTPUT_DIR", out)
    assert code != 0
    assert os.path.join(coco["train"][1], "000002.png") in log and "do not exist" in log
    assert "Starting training" not in log and not os.path.exists(os.path.join(out, "model_final.pth"))


def check(keys):
    verify_datasets(build_config(QUICKSTART if "DATASETS.COCO_INSTANCES" in keys else SEMANTIC, keys))


def edit_json(json_file, edit):
    with open(json_file) as f:
        coco = json.load(f)
    edit(coco)
    with open(json_file, "w") as f:
        json.dump(coco, f)


def test_good_coco_input_passes(coco):
    check(coco_keys(coco))


def test_missing_json_file(coco):
    os.remove(coco["val"][0])
    with pytest.raises(FileNotFoundError, match=f"json_file '{coco['val'][0]}' does not exist"):
        check(coco_keys(coco))


def test_missing_image_folder(coco, tmp_path):
    coco["train"] = (coco["train"][0], str(tmp_path / "no_such_folder"))
    with pytest.raises(FileNotFoundError, match=f"image_root '{tmp_path / 'no_such_folder'}' does not exist"):
        check(coco_keys(coco))


def test_listed_image_missing(coco):
    missing = os.path.join(coco["val"][1], "000001.png")
    os.remove(missing)
    with pytest.raises(FileNotFoundError, match=f"{coco['val'][0]} lists images that do not exist: {missing}$"):
        check(coco_keys(coco))


def test_annotation_with_unknown_category_id(coco):
    edit_json(coco["train"][0], lambda c: c["annotations"][1].update(category_id=9))
    with pytest.raises(ValueError, match=r"instances_train.json: annotations use category ids \[9\] that are not in 'categories' \(ids \[1, 2, 3, 4\]\)"):
        check(coco_keys(coco))


@pytest.mark.parametrize(
    "categories, problem",
    [
        ([{"id": 1, "name": "a"}, {"id": 1, "name": "b"}], r"category ids \[1\] appear more than once"),
        ([{"id": "1", "name": "a"}], "category ids must be integers"),
        ([], "category ids must be integers"),
    ],
)
def test_invalid_category_ids(coco, categories, problem):
    edit_json(coco["val"][0], lambda c: c.update(categories=categories, annotations=[]))
    with pytest.raises(ValueError, match=f"instances_val.json: {problem}"):
        check(coco_keys(coco))


def test_category_count_must_match_the_model(coco):
    with pytest.raises(ValueError, match="'mine_train' has 4 classes.*MODEL.ROI_HEADS.NUM_CLASSES is 3"):
        check(coco_keys(coco) + ["MODEL.ROI_HEADS.NUM_CLASSES", "3"])


def test_builtin_dataset_name_is_refused(coco):
    with pytest.raises(ValueError, match="'coco_2017_train' is already taken"):
        check(coco_keys(coco, train="coco_2017_train"))


def test_good_semantic_input_passes(semantic):
    check(semantic_keys(semantic))


def rewrite_label(path, change):
    label = np.array(Image.open(path))
    Image.fromarray(change(label)).save(path)


def test_label_value_outside_the_classes(semantic):
    path = os.path.join(semantic["val"][1], "002.png")
    rewrite_label(path, lambda label: np.where(label == 2, 7, label).astype(np.uint8))
    with pytest.raises(ValueError, match=rf"label map {path} has values \[7\] outside the 3 classes 0..2 and the ignore value 255"):
        check(semantic_keys(semantic))


def test_ignore_value_is_allowed(semantic):
    rewrite_label(os.path.join(semantic["train"][1], "000.png"), lambda label: np.full_like(label, 255))
    check(semantic_keys(semantic))


def test_label_size_differs_from_image(semantic):
    path = os.path.join(semantic["train"][1], "001.png")
    rewrite_label(path, lambda label: label[:, :60])
    with pytest.raises(ValueError, match=f"label map {path} is 60x64 \\(WxH\\) but its image is 64x64"):
        check(semantic_keys(semantic))


def test_label_without_image(semantic):
    os.remove(os.path.join(semantic["train"][0], "003.png"))
    with pytest.raises(FileNotFoundError, match="label maps without an image .*003.png"):
        check(semantic_keys(semantic))


def test_missing_label_folder(semantic, tmp_path):
    semantic["val"] = (semantic["val"][0], str(tmp_path / "no_labels"))
    with pytest.raises(FileNotFoundError, match=f"sem_seg_root '{tmp_path / 'no_labels'}' does not exist"):
        check(semantic_keys(semantic))


def test_class_count_must_match_the_model(semantic):
    with pytest.raises(ValueError, match="'seg_train' has 3 classes.*MODEL.SEM_SEG_HEAD.NUM_CLASSES is 4"):
        check(semantic_keys(semantic) + ["MODEL.SEM_SEG_HEAD.NUM_CLASSES", "4"])
