"""The context benchmarks (long-range, temporal) and the attention-map tool, end to end.

Each benchmark trains its variants for one iteration with ``train_net.py`` on freshly
generated data and must report what ``train_net.py`` wrote, FLOPs that match a hand count of
the criss-cross attention, and the accuracy split it promises (checked on a hand-built case).
"""
import importlib.util
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model

from ccnet.engine.cli import build_config
from tests.conftest import REPO_ROOT


def _run_tool(tool, *args, datasets_root):
    env = dict(os.environ, DETECTRON2_DATASETS=str(datasets_root))
    command = [sys.executable, os.path.join(REPO_ROOT, "tools", tool), *map(str, args)]
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert result.returncode == 0, result.stdout[-4000:]
    return result.stdout


def _load_tool(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO_ROOT, "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _last_miou(output_dir):
    with open(os.path.join(output_dir, "metrics.json")) as f:
        return [row for row in map(json.loads, f) if "sem_seg/mIoU" in row][-1]["sem_seg/mIoU"]


def _attention_gflops(config_file, positions, line_length):
    """Hand count for one criss-cross attention called RECURRENCE times (multiply-adds).

    Per call: the 1x1 query, key and value convs (C -> qk, qk, C) at every position, then
    per position ``line_length`` dot products of qk channels and a weighted sum of
    ``line_length`` C-channel values.
    """
    cfg = build_config(config_file, [])
    attention = build_model(cfg).sem_seg_head.context.attention
    c, qk = attention.in_channels, attention.qk_channels
    per_call = positions * (c * (2 * qk + c) + line_length * (qk + c))
    return cfg.MODEL.CCNET.RECURRENCE * per_call / 1e9


def test_context_benchmark_reports_train_net_results_and_attention_cost(tmp_path):
    output, report = tmp_path / "bench", tmp_path / "bench" / "results.json"
    stdout = _run_tool(
        "context_benchmark.py", "--iters", 1, "--variants", "fcn", "rcca_r2",
        "--output-dir", output, "--json", report, datasets_root=tmp_path / "datasets",
    )  # fmt: skip
    with open(report) as f:
        results = json.load(f)["variants"]
    assert list(results) == ["fcn", "rcca_r2"]
    for variant, result in results.items():
        assert result["iterations"] == 1
        # The same float read from two files (default rel 1e-6: JSON round trip is exact).
        assert result["mIoU"] == pytest.approx(_last_miou(output / variant))
        assert 0 <= result["object_accuracy_off_axis"] <= 100 and 0 <= result["object_accuracy_aligned"] <= 100
        assert result["peak_memory_mb_model"] > 0
        assert f"| {result['name']} | {result['mIoU']:.1f} |" in stdout  # one table row per variant
    fcn, rcca = results["fcn"], results["rcca_r2"]
    h, w = rcca["feature_size"]
    config = os.path.join(REPO_ROOT, "configs", "Synthetic-LongRange", "rcca_r2.yaml")
    assert fcn["gflops_attention"] == 0
    # FLOP counts are integers / 1e9 in float64: only the division rounds (1e-16); 1e-9 leaves margin.
    assert rcca["gflops_attention"] == pytest.approx(_attention_gflops(config, h * w, h + w - 1), rel=1e-9)
    # A difference of two model totals: float64 cancellation only (<= 1e-12 relative); 1e-6 is far
    # below any miscounted op (a 1x1 conv of the block alone is > 1e-2 of the attention).
    assert rcca["gflops_model"] - fcn["gflops_model"] == pytest.approx(rcca["gflops_attention"], rel=1e-6)
    assert rcca["peak_memory_mb_attention"] > fcn["peak_memory_mb_attention"]


def test_object_accuracy_splits_aligned_and_off_axis_objects(tmp_path):
    """A hand-built prediction: the aligned object half right, the off-axis one all wrong."""
    benchmark = _load_tool("context_benchmark")
    name = "test_context_tools_objects"
    label_file = tmp_path / "a_label.png"
    cv2.imwrite(str(label_file), np.zeros((8, 8), dtype=np.uint8))  # only its size is used here
    records = [
        {
            "file_name": "a.png", "sem_seg_file_name": str(label_file), "height": 8, "width": 8,
            "objects": [
                {"bbox": [0, 0, 4, 2], "category_id": 4, "aligned": True},  # 8 pixels
                {"bbox": [6, 6, 8, 8], "category_id": 5, "aligned": False},  # 4 pixels
            ],
        }
    ]  # fmt: skip
    DatasetCatalog.register(name, lambda: records)
    try:
        prediction = np.zeros((8, 8), dtype=np.uint8)
        prediction[0, 0:4] = 4  # the top row of the aligned object: 4 of its 8 pixels
        prediction[6:8, 6:8] = 6  # the off-axis object, as the wrong colour
        encoded = []
        for category in (4, 6):
            rle = mask_util.encode(np.asfortranarray(prediction == category))
            rle["counts"] = rle["counts"].decode()
            encoded.append({"file_name": "a.png", "category_id": category, "segmentation": rle})
        predictions_file = tmp_path / "sem_seg_predictions.json"
        predictions_file.write_text(json.dumps(encoded))
        accuracy = benchmark.object_accuracy(str(predictions_file), name)
    finally:
        DatasetCatalog.remove(name)
    # Ratios of pixel counts (default rel 1e-6; float64 division is exact to 1e-16).
    assert accuracy == pytest.approx(
        {"object_accuracy": 100 * 4 / 12, "object_accuracy_aligned": 50.0, "object_accuracy_off_axis": 0.0}
    )


def test_temporal_benchmark_reports_both_clip_lengths(tmp_path):
    output, report = tmp_path / "bench", tmp_path / "bench" / "results.json"
    stdout = _run_tool(
        "temporal_benchmark.py", "--iters", 1, "--output-dir", output, "--json", report,
        datasets_root=tmp_path / "datasets",
    )  # fmt: skip
    with open(report) as f:
        results = json.load(f)["variants"]
    assert [r["clip_length"] for r in results.values()] == [1, 5]
    for variant, result in results.items():
        assert result["mIoU"] == pytest.approx(_last_miou(output / variant))  # the same float, two files
        assert 0 <= result["accuracy_square"] <= 100 and 0 <= result["accuracy_disc"] <= 100
        assert f"| {result['name']} | {result['clip_length']} | {result['mIoU']:.1f} |" in stdout
        config = os.path.join(REPO_ROOT, "configs", "Synthetic-Temporal", f"{variant}.yaml")
        t, h, w = result["feature_size"]
        # Each of the T*h*w positions sees its time line, row and column, itself once.
        expected = _attention_gflops(config, t * h * w, t + h + w - 2)
        assert result["gflops_attention"] == pytest.approx(expected, rel=1e-9)  # integer counts / 1e9
    t1, t5 = results["ccnet_t1"], results["ccnet_t5"]
    assert t5["gflops_model"] > 4 * t1["gflops_model"]  # the backbone runs on all 5 frames


def test_visualize_attention_draws_both_passes(tmp_path):
    from ccnet.data.datasets.long_range import SPLITS, draw_long_range_image

    config = os.path.join(REPO_ROOT, "configs", "Synthetic-LongRange", "rcca_r2.yaml")
    torch.manual_seed(0)
    model = build_model(build_config(config, []))
    with torch.no_grad():
        model.sem_seg_head.context.attention.gamma.fill_(1.0)  # trained models are not the identity
    weights = tmp_path / "model.pth"
    torch.save({"model": model.state_dict()}, weights)
    image, _, _ = draw_long_range_image(SPLITS["val"], 0)
    image_file = tmp_path / "image.png"
    cv2.imwrite(str(image_file), image[:, :, ::-1])
    figure = tmp_path / "out" / "attention.png"

    stdout = _run_tool(
        "visualize_attention.py", "--config-file", config, "--input", image_file, "--pixel", 20, 30,
        "--output", figure, "MODEL.WEIGHTS", weights, datasets_root=tmp_path / "datasets",
    )  # fmt: skip
    assert "2 passes" in stdout
    drawn = cv2.imread(str(figure))
    assert drawn is not None and drawn.shape[1] > 3 * image.shape[1]  # image, R=1, R=2, prediction side by side


def test_visualize_attention_needs_trained_weights(tmp_path):
    config = os.path.join(REPO_ROOT, "configs", "Synthetic-LongRange", "rcca_r2.yaml")
    env = dict(os.environ, DETECTRON2_DATASETS=str(tmp_path))
    command = [
        sys.executable, os.path.join(REPO_ROOT, "tools", "visualize_attention.py"), "--config-file", config,
        "--input", str(tmp_path / "x.png"), "--pixel", "1", "1", "--output", str(tmp_path / "o.png"),
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert result.returncode != 0 and "MODEL.WEIGHTS" in result.stderr
