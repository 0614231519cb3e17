"""tools/attention_stats_cost.py: the logging hooks' cost, as the ratio it prints."""
import json
import os

import pytest

from tests.conftest import REPO_ROOT, load_tool


def test_overhead_is_the_logged_steps_extra_time_over_the_period(tmp_path, monkeypatch):
    tool = load_tool("attention_stats_cost")
    calls = []

    def fake_medians(runs, repeats):
        for run in runs.values():
            run()  # the real steps run once: the hooks are attached and removed again
        calls.append(list(runs))
        return {"step": 0.2, "logged step": 0.25}

    monkeypatch.setattr(tool, "interleaved_medians", fake_medians)
    monkeypatch.setattr(tool, "matmul_rate", lambda: {"gflops_best": 1.0})
    out = tmp_path / "cost.json"
    result = tool.main(["--size", "32", "--period", "10", "--json", str(out)])
    assert calls == [["step", "logged step"]]
    assert result["blocks"] == 1 and result["logged_step_extra"] == pytest.approx(0.25)
    assert result["overhead_per_step"] == pytest.approx(0.025)  # 25% on 1 step in 10
    assert json.loads(out.read_text())["overhead_per_step"] == pytest.approx(0.025)


def test_a_model_without_criss_cross_blocks_is_named():
    tool = load_tool("attention_stats_cost")
    config = os.path.join(REPO_ROOT, "configs", "Synthetic-LongRange", "fcn.yaml")
    with pytest.raises(ValueError, match="no criss-cross block"):
        tool.main(["--config-file", config, "--size", "32", "--repeats", "1"])
