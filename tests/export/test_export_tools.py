"""tools/export_model.py and tools/benchmark_export.py from the command line."""
import json
import os
import subprocess
import sys

import onnxruntime
import torch

from tests.conftest import REPO_ROOT
from tests.test_semantic_configs import TINY_MODEL_OVERRIDES


def _run(tool, *args):
    command = [sys.executable, os.path.join(REPO_ROOT, "tools", tool), *args]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)


def _semantic_args(output, *extra):
    config = "configs/Cityscapes-SemanticSegmentation/rcca_r2_R_101_OS8_60k.yaml"
    return ["--config-file", config, "--format", "onnx", "--sample-size", "33", "41", "--output", str(output)] + TINY_MODEL_OVERRIDES + list(extra)


def test_export_tool_writes_a_checked_onnx_file_from_saved_weights(tmp_path):
    # A "trained" checkpoint: weights saved by Detectron2's checkpointer, gamma opened.
    from ccnet.engine.cli import build_config
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model

    config = os.path.join(REPO_ROOT, "configs/Cityscapes-SemanticSegmentation/rcca_r2_R_101_OS8_60k.yaml")
    model = build_model(build_config(config, TINY_MODEL_OVERRIDES + ["TEST.SLIDING_WINDOW.ENABLED", "False"]))
    with torch.no_grad():
        model.sem_seg_head.context.attention.gamma.fill_(0.8)
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("trained")
    weights = os.path.join(tmp_path, "trained.pth")

    result = _run("export_model.py", *_semantic_args(tmp_path / "out", "TEST.SLIDING_WINDOW.ENABLED", "False", "MODEL.WEIGHTS", weights))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| crop 27x29 | sem_seg |" in result.stdout and "| NO" not in result.stdout
    path = tmp_path / "out" / "model.onnx"
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    # The exported graph holds the saved gamma, not the fresh model's 0: its output differs
    # from a gamma-0 model's on the same image.
    model.eval()
    image = torch.rand(3, 33, 41) * 255
    with torch.no_grad():
        (exported,) = session.run(None, {"image": image.numpy()})
        trained = model([{"image": image}])[0]["sem_seg"]
        model.sem_seg_head.context.attention.gamma.zero_()
        fresh = model([{"image": image}])[0]["sem_seg"]
    torch.testing.assert_close(torch.from_numpy(exported), trained, rtol=0, atol=1e-4)
    assert float((trained - fresh).abs().max()) > 1e-3


def test_export_tool_refuses_sliding_window_inference_and_writes_nothing(tmp_path):
    result = _run("export_model.py", *_semantic_args(tmp_path / "out"))
    assert result.returncode == 1
    assert "CANNOT EXPORT" in result.stderr and "TEST.SLIDING_WINDOW.ENABLED False" in result.stderr
    assert not (tmp_path / "out" / "model.onnx").exists()


def test_benchmark_export_reports_both_runtimes(tmp_path):
    out = tmp_path / "bench.json"
    result = _run("benchmark_export.py", "--variants", "rcca_block,nl_block", "--feature-size", "7", "--repeats", "1", "--threads", "1", "--json", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert [r["variant"] for r in rows] == ["rcca_block", "nl_block"]
    for r in rows:
        assert r["eager_ms"] > 0 and r["onnxruntime_ms"] > 0
        assert abs(r["onnxruntime_over_eager"] - r["onnxruntime_ms"] / r["eager_ms"]) < 1e-9
        assert r["max_abs_diff"] < 1e-3
        assert f"| {r['variant']} |" in result.stdout
