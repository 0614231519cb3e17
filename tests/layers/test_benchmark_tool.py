"""tools/benchmark_attention.py runs end to end on a tiny setting and prints what it promises."""
import json
import os
import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_benchmark_json_smoke():
    cmd = [
        sys.executable, os.path.join(REPO_ROOT, "tools", "benchmark_attention.py"),
        "--size", "8", "--channels", "16", "--repeats", "1", "--variants", "cc_core", "--json",
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True)
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [row["key"] for row in rows] == ["cc_core"]
    for row in rows:
        assert {"module", "gflops", "peak_mem_mb", "time_ms", "device"} <= row.keys()
        assert row["time_ms"] > 0 and row["peak_mem_mb"] >= 0
    # The core's FLOPs: 8x8 positions, 15 positions each, (2 query/key + 16 value) channels.
    assert rows[0]["gflops"] * 1e9 == 8 * 8 * 15 * (2 + 16)
