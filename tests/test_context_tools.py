"""The context benchmarks (long-range, temporal) and the attention-map tool, end to end.

Each benchmark trains its variants for one iteration per seed with ``train_net.py`` on freshly
generated data and must report what ``train_net.py`` wrote (per seed, and its mean and std), FLOPs that match a hand count of
the criss-cross attention, and the accuracy split it promises (checked on a hand-built case).
"""
import argparse
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
from tests.conftest import REPO_ROOT, load_tool


def _run_tool(tool, *args, datasets_root):
    env = dict(os.environ, DETECTRON2_DATASETS=str(datasets_root))
    command = [sys.executable, os.path.join(REPO_ROOT, "tools", tool), *map(str, args)]
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert result.returncode == 0, result.stdout[-4000:]
    return result.stdout


def _last_evaluation(output_dir):
    with open(os.path.join(output_dir, "metrics.json")) as f:
        return [row for row in map(json.loads, f) if "sem_seg/mIoU" in row][-1]


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
    return cfg.MODEL.CONTEXT.RECURRENCE * per_call / 1e9


def test_context_benchmark_reports_mean_and_std_over_seeds_and_attention_cost(tmp_path):
    output, report = tmp_path / "bench", tmp_path / "bench" / "results.json"
    stdout = _run_tool(
        "context_benchmark.py", "--iters", 1, "--seeds", "0,1", "--variants", "fcn", "rcca_r2",
        "--output-dir", output, "--json", report, datasets_root=tmp_path / "datasets",
    )  # fmt: skip
    with open(report) as f:
        results = json.load(f)
    assert [r["variant"] for r in results] == ["fcn", "rcca_r2"]
    for result in results:
        assert result["iterations"] == 1 and result["seeds"] == [0, 1]
        assert [r["seed"] for r in result["per_seed"]] == [0, 1]
        for per_seed in result["per_seed"]:
            evaluation = _last_evaluation(output / result["variant"] / f"seed_{per_seed['seed']}")
            assert per_seed["mIoU"] == pytest.approx(evaluation["sem_seg/mIoU"])
            assert per_seed["IoU"]["cue_red"] == pytest.approx(evaluation["sem_seg/IoU-cue_red"])
            assert 0 <= per_seed["object_accuracy_off_axis"] <= 100 and 0 <= per_seed["object_accuracy_aligned"] <= 100
        # Mean and sample std over the seeds, from the per-seed metrics.json files.
        mious = [_last_evaluation(output / result["variant"] / f"seed_{s}")["sem_seg/mIoU"] for s in (0, 1)]
        assert result["mean"]["mIoU"] == pytest.approx((mious[0] + mious[1]) / 2)
        assert result["std"]["mIoU"] == pytest.approx(abs(mious[0] - mious[1]) / 2**0.5)
        accuracies = [r["object_accuracy"] for r in result["per_seed"]]
        assert result["std"]["object_accuracy"] == pytest.approx(abs(accuracies[0] - accuracies[1]) / 2**0.5)
        assert result["peak_memory_mb_model"] > 0
        row = f"| {result['name']} | {result['mean']['mIoU']:.1f} ± {result['std']['mIoU']:.1f} | "
        row += f"{mious[0]:.1f} / {mious[1]:.1f} |"
        assert row in stdout  # one table row per variant: mean ± std, then the seeds
    # The seeds really differ: two seeds, two different initial models.
    weights = [torch.load(output / "rcca_r2" / f"seed_{s}" / "model_final.pth", weights_only=False)["model"] for s in (0, 1)]
    assert not torch.equal(weights[0]["sem_seg_head.context.reduce.weight"], weights[1]["sem_seg_head.context.reduce.weight"])
    fcn, rcca = results
    assert "sem_seg_head.context.attention/gamma" in rcca["per_seed"][0]["attention"] and not fcn["per_seed"][0]["attention"]
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
    benchmark = load_tool("context_benchmark")
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


def test_temporal_benchmark_reports_both_clip_lengths_with_one_seed(tmp_path):
    output, report = tmp_path / "bench", tmp_path / "bench" / "results.json"
    stdout = _run_tool(
        "temporal_benchmark.py", "--iters", 1, "--seeds", 7, "--output-dir", output, "--json", report,
        datasets_root=tmp_path / "datasets",
    )  # fmt: skip
    with open(report) as f:
        results = {r["variant"]: r for r in json.load(f)}
    assert [r["clip_length"] for r in results.values()] == [1, 5]
    for variant, result in results.items():
        (per_seed,) = result["per_seed"]
        run_dir = output / variant / "seed_7"
        assert per_seed["seed"] == 7 and "SEED: 7" in (run_dir / "config.yaml").read_text()
        assert per_seed["mIoU"] == pytest.approx(_last_evaluation(run_dir)["sem_seg/mIoU"])
        assert result["mean"]["mIoU"] == per_seed["mIoU"] and result["std"]["mIoU"] == 0
        assert 0 <= per_seed["accuracy_square"] <= 100 and 0 <= per_seed["accuracy_disc"] <= 100
        assert f"| {result['name']} | {result['clip_length']} | {per_seed['mIoU']:.1f} | {per_seed['mIoU']:.1f} |" in stdout
        config = os.path.join(REPO_ROOT, "configs", "Synthetic-Temporal", f"{variant}.yaml")
        t, h, w = result["feature_size"]
        # Each of the T*h*w positions sees its time line, row and column, itself once.
        expected = _attention_gflops(config, t * h * w, t + h + w - 2)
        assert result["gflops_attention"] == pytest.approx(expected, rel=1e-9)  # integer counts / 1e9
    t1, t5 = results["ccnet_t1"], results["ccnet_t5"]
    # Outside the context module, the backbone runs on all 5 frames and the classifier on the
    # annotated one only: T=5 costs 4 backbone passes (on one frame) more than T=1.
    _, h, w = t1["feature_size"]
    backbone = build_model(build_config(os.path.join(REPO_ROOT, "configs", "Synthetic-Temporal", "ccnet_t1.yaml"))).backbone
    frame = torch.zeros(1, 3, h * backbone.output_shape()["res2"].stride, w * backbone.output_shape()["res2"].stride)
    backbone_gflops = load_tool("measure").gflops(backbone.eval(), (frame,))[""]
    outside = {t: r["gflops_model"] - r["gflops_context"] for t, r in ((1, t1), (5, t5))}
    assert outside[5] - outside[1] == pytest.approx(4 * backbone_gflops, rel=1e-6)


def test_seeds_argument():
    parse_seeds = load_tool("variant_runs").parse_seeds

    assert parse_seeds("0,1,2") == [0, 1, 2] and parse_seeds("7") == [7]
    for bad in ("", "a", "1,1"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_seeds(bad)


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


def test_ccl_diagnostics_splits_the_ccl_gradient_into_its_terms():
    """Each term's gradient (into the RCCA output and gamma) equals that of the head's CCL loss
    with only that term's weight left on, computed here by autograd on the head's own loss."""
    from detectron2.utils.events import EventStorage

    tool = load_tool("ccl_diagnostics")
    config = os.path.join(REPO_ROOT, "configs", "Synthetic-LongRange", "rcca_r2_ccl.yaml")
    g = torch.Generator().manual_seed(0)
    batch = [
        {"image": torch.randint(0, 255, (3, 64, 64), generator=g, dtype=torch.uint8), "sem_seg": torch.randint(0, 7, (64, 64), generator=g)}
        for _ in range(2)
    ]  # fmt: skip
    weights = {"variance": (2.0, 0.0, 0.0), "distance": (0.0, 3.0, 0.0), "regularisation": (0.0, 0.0, 0.5)}
    for term, (alpha, beta, gamma) in weights.items():
        opts = ["MODEL.CONTEXT.GAMMA_INIT", "0.3", "MODEL.CCNET.DROPOUT", "0.0"]
        opts += ["MODEL.CCNET.CCL_ALPHA", str(alpha), "MODEL.CCNET.CCL_BETA", str(beta), "MODEL.CCNET.CCL_GAMMA", str(gamma)]
        torch.manual_seed(0)
        model = build_model(build_config(config, opts))
        with EventStorage(0):
            row, _ = tool.measure(model, batch)
            captured = {}
            model.sem_seg_head.context.register_forward_hook(lambda m, i, o: captured.setdefault("context", o))
            loss = model(batch)["loss_ccl"]
        to_context, to_gamma = torch.autograd.grad(loss, [captured["context"], model.sem_seg_head.context.attention.gamma])
        assert row[f"grad_context/{term}"] == pytest.approx(float(to_context.norm()), rel=1e-4)
        assert row[f"grad_gamma/{term}"] == pytest.approx(float(to_gamma.abs()), rel=1e-4)


def test_parallel_runs_keep_seed_order_and_aggregate_each_variant(tmp_path):
    """--jobs 3 on fake runs that finish in reverse order: per_seed stays in --seeds order."""
    import time

    variant_runs = load_tool("variant_runs")
    args = variant_runs.variants_argument_parser("", ["a", "b"], str(tmp_path)).parse_args(
        ["--seeds", "3,1,2", "--jobs", "3", "--json", str(tmp_path / "r.json")]
    )
    scores = {("a", 3): 10.0, ("a", 1): 20.0, ("a", 2): 60.0, ("b", 3): 1.0, ("b", 1): 1.0, ("b", 2): 4.0}

    def run_seed(variant, args, seed):
        time.sleep(0.05 * seed)
        return {"seed": seed, "mIoU": scores[(variant, seed)], "IoU": {"x": 2 * scores[(variant, seed)]}}

    results = variant_runs.run_variants_and_report(args, run_seed, lambda v, a: {"name": v.upper()}, lambda r: "")
    assert [r["variant"] for r in results] == ["a", "b"]
    a, b = results
    assert [r["seed"] for r in a["per_seed"]] == [3, 1, 2] and [r["mIoU"] for r in a["per_seed"]] == [10.0, 20.0, 60.0]
    assert a["mean"]["mIoU"] == pytest.approx(30.0) and a["std"]["mIoU"] == pytest.approx(np.std([10, 20, 60], ddof=1))
    assert a["mean"]["IoU"]["x"] == pytest.approx(60.0) and b["mean"]["mIoU"] == pytest.approx(2.0)
    assert json.loads((tmp_path / "r.json").read_text()) == results
