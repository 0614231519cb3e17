"""tools/benchmark_attention.py: every variant agrees with ours, the floor's FLOPs are the hand
count, and the command runs end to end on a tiny setting and prints what it promises."""
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from tests.conftest import REPO_ROOT, load_tool

bench = load_tool("benchmark_attention")

CORES = ["floor", "cc_core", "cc_core_cl", "cc_compile", "cc_straight", "cc_mmcv"]


def _args(**kw):
    defaults = dict(size=6, channels=16, device="cpu", batches=[2], repeats=1)
    return SimpleNamespace(**{**defaults, **kw})


@pytest.mark.parametrize("mode", ["train", "inference"])
def test_every_variant_agrees_with_ours(mode):
    args = _args()
    cases = {name: bench.Case(name, args, batch=2) for name in CORES}
    diffs = bench.check_agreement(cases, mode)
    assert set(diffs) == set(CORES) - {"cc_core"}
    assert all(d <= 1e-5 for d in diffs.values())
    # Independently of the check: outputs (and gradients) against ours, element by element.
    reference = cases["cc_core"].result(mode)
    for name in CORES:
        result = cases[name].result(mode)
        assert len(result) == (1 if name == "floor" or mode == "inference" else 4)
        for a, b in zip(result, reference):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_agreement_check_catches_a_wrong_variant(monkeypatch):
    args = _args(batches=[1])
    cases = {name: bench.Case(name, args, batch=1) for name in ("cc_core", "cc_mmcv")}
    wrong = cases["cc_mmcv"]
    wrong.module.fn = lambda q, k, v: bench.criss_cross_mmcv(q, k, v) * (1 + 1e-4)
    with pytest.raises(RuntimeError, match="cc_mmcv disagrees"):
        bench.check_agreement(cases, "inference")


@pytest.mark.parametrize("size,channels,batch", [(6, 16, 2), (5, 8, 1)])
def test_floor_flops_equal_hand_count(size, channels, batch):
    args = _args(size=size, channels=channels, batches=[batch])
    flops = bench.count_gflops("floor", args)
    positions, reach, cq = batch * size * size, 2 * size, channels // 8
    # Per position and per axis line of length L=size: 6 products with the C value channels
    # over both axes (forward w v; backward w^T g, g v^T) and 8 with Cq (energies forward and
    # recomputed, d query, d key), each L multiply-adds per channel.
    assert flops["train"] * 1e9 == positions * reach * (3 * channels + 4 * cq)
    assert flops["inference"] * 1e9 == positions * reach * (channels + cq)


def test_benchmark_command_smoke(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [
        sys.executable, os.path.join(REPO_ROOT, "tools", "benchmark_attention.py"),
        "--size", "8", "--channels", "16", "--repeats", "1", "--threads", "1,2",
        "--variants", "floor,cc_core,cc_straight,cc_mmcv,rcca,nl", "--json", str(out),
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=True)
    rows = json.loads(out.read_text())["rows"]
    assert {(r["key"], r["mode"], r["threads"]) for r in rows} == {
        (k, m, t)
        for k in ("floor", "cc_core", "cc_straight", "cc_mmcv", "rcca", "nl")
        for m in ("train", "inference")
        for t in (1, 2)
    }
    for row in rows:
        assert row["time_ms"] > 0 and row["time_vs_floor"] > 0
        if row["key"] != "floor":
            assert row["peak_mem_mb"] >= 0
    core = next(r for r in rows if r["key"] == "cc_core")
    # The core's FLOPs: 8x8 positions, 15 positions each, (2 query/key + 16 value) channels.
    assert core["gflops_forward"] * 1e9 == 8 * 8 * 15 * (2 + 16)
    assert "| 2 thr, inference |" in result.stdout and "`rcca` / `nl`, 1 thr, train" in result.stdout
