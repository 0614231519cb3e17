"""End to end on the synthetic shapes: ``train_net.py --eval-only``, ``tools/demo.py``, bad images."""
import json
import os
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from detectron2.modeling import build_model

from ccnet.data import build_dataset_mapper
from ccnet.engine.cli import build_config
from tests.conftest import REPO_ROOT

QUICKSTART = os.path.join(REPO_ROOT, "configs", "Quickstart", "mask_rcnn_rcca_shapes.yaml")
SEMANTIC = os.path.join(REPO_ROOT, "configs", "Synthetic-LongRange", "rcca_r2.yaml")
TRUNCATED_PNG = b"\x89PNG\r\n\x1a\n truncated"


def run(*command, datasets_root):
    env = dict(os.environ, DETECTRON2_DATASETS=datasets_root, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, *command], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    return result.returncode, result.stdout


def save_random_weights(config, path):
    torch.manual_seed(0)
    model = build_model(build_config(config, ["MODEL.WEIGHTS", ""]))
    torch.save({"model": model.state_dict(), "iteration": 41}, path)
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return save_random_weights(QUICKSTART, str(tmp_path_factory.mktemp("weights") / "model.pth"))


def test_eval_only_evaluates_the_weights_on_the_generated_val_split(weights, tmp_path):
    datasets, output = str(tmp_path / "datasets"), str(tmp_path / "eval")
    code, log = run(
        "train_net.py", "--config-file", QUICKSTART, "--eval-only",
        "MODEL.WEIGHTS", weights, "OUTPUT_DIR", output, "TEST.DETECTIONS_PER_IMAGE", "5",
        datasets_root=datasets,
    )  # fmt: skip
    assert code == 0, log[-4000:]
    assert os.path.isfile(os.path.join(datasets, "shapes_instances", "annotations", "instances_val.json"))
    with open(os.path.join(output, "metrics.json")) as f:
        (row,) = [json.loads(line) for line in f]
    assert row["iteration"] == 41
    assert 0.0 <= row["bbox/AP"] <= 100.0 and 0.0 <= row["segm/AP"] <= 100.0
    with open(os.path.join(output, "inference", "shapes_instances_val", "coco_instances_results.json")) as f:
        predictions = json.load(f)
    assert {p["image_id"] for p in predictions} == set(range(1, 201))  # every val image
    assert {p["category_id"] for p in predictions} <= {1, 2, 3, 4}


def write_video(path, frames=3, size=48):
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (size, size))
    for i in range(frames):
        writer.write(np.full((size, size, 3), 40 * i, np.uint8))
    writer.release()


def test_demo_draws_images_folders_globs_and_videos(weights, tmp_path):
    inputs = tmp_path / "inputs"
    (inputs / "folder").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for path, size in [(inputs / "a.png", (64, 80)), (inputs / "folder" / "b.jpg", (48, 48)), (inputs / "c1.png", (40, 40))]:
        cv2.imwrite(str(path), rng.integers(0, 255, (*size, 3), dtype=np.uint8))
    write_video(str(inputs / "clip.mp4"))
    output = tmp_path / "out"
    code, log = run(
        "tools/demo.py", "--config-file", QUICKSTART, "--output", str(output), "--confidence-threshold", "0",
        "--input", str(inputs / "a.png"), str(inputs / "folder"), str(inputs / "c?.png"), str(inputs / "clip.mp4"),
        "--opts", "MODEL.WEIGHTS", weights,
        datasets_root=str(tmp_path / "datasets"),
    )  # fmt: skip
    assert code == 0, log[-4000:]
    assert sorted(os.listdir(output)) == ["a.png", "b.png", "c1.png", "clip.mp4"]
    drawn = cv2.imread(str(output / "a.png"))
    assert drawn.shape == (64, 80, 3)
    assert not np.array_equal(drawn, cv2.imread(str(inputs / "a.png")))  # something was drawn
    video = cv2.VideoCapture(str(output / "clip.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    video.release()


def test_demo_draws_semantic_predictions(tmp_path):
    weights = save_random_weights(SEMANTIC, str(tmp_path / "semantic.pth"))
    image = tmp_path / "image.png"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    code, log = run(
        "tools/demo.py", "--config-file", SEMANTIC, "--input", str(image), "--output", str(tmp_path / "out"),
        "--opts", "MODEL.WEIGHTS", weights,
        datasets_root=str(tmp_path / "datasets"),
    )  # fmt: skip
    assert code == 0, log[-4000:]
    drawn = cv2.imread(str(tmp_path / "out" / "image.png"))
    assert drawn.shape == (64, 64, 3) and not np.array_equal(drawn, cv2.imread(str(image)))


def test_demo_names_a_corrupt_input(weights, tmp_path):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(TRUNCATED_PNG)
    code, log = run(
        "tools/demo.py", "--config-file", QUICKSTART, "--input", str(corrupt), "--output", str(tmp_path / "out"),
        "--opts", "MODEL.WEIGHTS", weights,
        datasets_root=str(tmp_path / "datasets"),
    )  # fmt: skip
    assert code != 0 and str(corrupt) in log.strip().splitlines()[-1], log[-2000:]


@pytest.mark.parametrize(
    "content",
    [
        None,
        b"not an image at all",
        TRUNCATED_PNG,
    ],
    ids=["missing", "not-an-image", "truncated-png"],
)
def test_training_mapper_names_a_missing_or_corrupt_image(content, tmp_path):
    path = tmp_path / "000000.png"
    if content is not None:
        path.write_bytes(content)
    mapper = build_dataset_mapper(build_config(QUICKSTART), is_train=True)
    record = {"file_name": str(path), "image_id": 1, "height": 128, "width": 128, "annotations": []}
    with pytest.raises(Exception, match=re.escape(str(path))):
        mapper(record)
