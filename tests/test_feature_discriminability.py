"""tools/feature_discriminability.py: the intra / centre distances against hand-computed values,
and a whole run on a tiny dataset against a brute-force recomputation from the captured features."""
import json
import os

import numpy as np
import pytest
import torch

from tests.conftest import REPO_ROOT, load_tool
from tests.engine import tiny_semseg

tool = load_tool("feature_discriminability")
CONFIG = os.path.join(REPO_ROOT, "configs", "Synthetic-LongRange", "rcca_r2.yaml")  # a CCNet head, whole-image inference


def test_one_image_hand_computed():
    # Class 0 at features 0 and 2 (centre 1: distances 1, 1), class 1 at 10 and 10 (distances 0),
    # one ignored pixel far away: intra = mean(1, 1, 0, 0) = 0.5, centres 10 - 1 = 9.
    features = torch.tensor([[[0.0, 2.0, 50.0], [10.0, 10.0, 50.0]]])  # (C=1, h=2, w=3)
    label = np.array([[0, 0, 255], [1, 1, 255]], np.uint8)
    result = tool.image_discriminability(features, label, ignore_value=255)
    assert result["intra"] == pytest.approx(0.5)
    assert result["centres"] == pytest.approx(9.0)
    assert result["ratio"] == pytest.approx(0.5 / 9.0)


def test_labels_resized_to_the_feature_grid():
    # A (4, 6) label map on a (2, 3) feature grid: nearest neighbour keeps every other row/column.
    features = torch.tensor([[[0.0, 0.0, 4.0], [0.0, 0.0, 4.0]]])
    label = np.zeros((4, 6), np.uint8)
    label[:, 4:] = 1
    result = tool.image_discriminability(features, label, ignore_value=255)
    assert result["intra"] == pytest.approx(0.0) and result["centres"] == pytest.approx(4.0)


def test_whole_run_matches_brute_force(tmp_path):
    tiny_semseg.write_dataset(str(tmp_path / "data"), num_images=3, size=64)
    tiny_semseg.register(str(tmp_path / "data"))
    out = tmp_path / "d.json"
    opts = ["MODEL.SEM_SEG_HEAD.NUM_CLASSES", "3", "DATASETS.TEST", "('tiny_semseg_val',)", "SEED", "0"]
    result = tool.main(["--config-file", CONFIG, "--json", str(out), *opts])
    assert json.loads(out.read_text())["ratio"] == pytest.approx(result["ratio"])
    assert result["images"] == 3 and len(result["per_image"]) == 3
    # Brute force on the first image: pixel-by-pixel distances of the captured features.
    from ccnet.engine.cli import build_config
    from detectron2.data import DatasetCatalog
    from detectron2.modeling import build_model
    import cv2

    cfg = build_config(CONFIG, opts)
    model = build_model(cfg).eval()  # not the tool's weights: the brute force recomputes from these features
    d = DatasetCatalog.get("tiny_semseg_val")[0]
    captured = []
    model.sem_seg_head.context.register_forward_hook(lambda m, i, o: captured.append(o[0]))
    image = cv2.imread(d["file_name"])[:, :, ::-1] if cfg.INPUT.FORMAT == "RGB" else cv2.imread(d["file_name"])
    with torch.no_grad():
        model([{"image": torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))}])
    features = captured[0]
    label = cv2.imread(d["sem_seg_file_name"], cv2.IMREAD_UNCHANGED)
    h, w = features.shape[-2:]
    rows = (np.arange(h) * label.shape[0] / h).astype(int)
    cols = (np.arange(w) * label.shape[1] / w).astype(int)
    small = label[rows][:, cols]
    pixels = features.permute(1, 2, 0).reshape(-1, features.shape[0]).double()
    classes = small.reshape(-1)
    centres = {c: pixels[classes == c].mean(0) for c in np.unique(classes)}
    intra = np.mean([float((pixels[i] - centres[c]).norm()) for i, c in enumerate(classes)])
    keys = sorted(centres)
    pairs = [float((centres[a] - centres[b]).norm()) for i, a in enumerate(keys) for b in keys[i + 1 :]]
    expected = tool.image_discriminability(features, label, 255)
    assert expected["intra"] == pytest.approx(intra, rel=1e-5)
    assert expected["centres"] == pytest.approx(np.mean(pairs), rel=1e-5)
