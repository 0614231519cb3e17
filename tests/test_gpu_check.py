"""tools/gpu_check.py: its CPU dry run writes the test summary and the attention table, and the
environment it sets up keeps the machine's own torch."""
import json
import os
import subprocess
import sys

import torch

from tests.conftest import REPO_ROOT, load_tool

gpu_check = load_tool("gpu_check")


def test_installs_every_pin_but_torch_and_torchvision():
    import tomllib

    with open(os.path.join(REPO_ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    pins = project["dependencies"] + project["optional-dependencies"]["test"]
    kept = [p for p in pins if p.startswith(("torch==", "torchvision=="))]
    assert len(kept) == 2  # both are pinned for `make setup`
    assert sorted(gpu_check.dependencies_to_install()) == sorted(set(pins) - set(kept))


def test_cpu_dry_run(tmp_path):
    cmd = [sys.executable, os.path.join(REPO_ROOT, "tools", "gpu_check.py"), "--cpu", "--output-dir", str(tmp_path)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "gpu-check passed" in result.stdout
    environment = (tmp_path / "environment.txt").read_text()
    assert f"torch {torch.__version__}" in environment and "detectron2 0.6" in environment
    summary = (tmp_path / "cuda_tests.txt").read_text()
    assert "skipped" in summary and "failed" not in summary  # no GPU: the cuda tests skip
    assert (tmp_path / "cuda_tests.xml").exists()
    table = (tmp_path / "attention_cuda.md").read_text()
    rows = json.loads((tmp_path / "attention_cuda.json").read_text())["rows"]
    settings = {(r["dtype"], r["batch"], r["mode"]) for r in rows}
    assert settings == {(d, b, m) for d in ("float32", "bfloat16") for b in (1, 2) for m in ("train", "inference")}
    for dtype, batch, mode in settings:
        assert f"| 1 thr, {dtype}, batch {batch}, {mode} |" in table
    assert {r["key"] for r in rows} == {"floor", "cc_core", "cc_core_cl", "cc_straight", "cc_mmcv"}
