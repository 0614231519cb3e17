"""tools/benchmark_model.py and tools/run_demo.py: their pieces on tiny inputs, without the long runs."""
import json
import os

import pytest
import torch

from tests.conftest import load_tool


# ----------------------------------------------------------------------- benchmark_model.py


def test_benchmark_model_variants_are_shipped_configs():
    bench = load_tool("benchmark_model")
    assert list(bench.VARIANTS)[0] == "baseline"
    for config in bench.VARIANTS.values():
        assert os.path.isfile(os.path.join(bench.CONFIG_DIR, config)), config


def test_benchmark_model_synthetic_masks_are_their_boxes():
    bench = load_tool("benchmark_model")
    batch = bench.synthetic_batch(size=64, images=2, instances=3, device="cpu")
    assert len(batch) == 2
    for item in batch:
        assert item["image"].shape == (3, 64, 64)
        target = item["instances"]
        assert len(target) == 3 and target.image_size == (64, 64)
        boxes = target.gt_boxes.tensor
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 64).all() and (boxes[:, 2:] > boxes[:, :2]).all()
        for mask, (x0, y0, x1, y1) in zip(target.gt_masks.tensor, boxes.int().tolist()):
            expected = torch.zeros(64, 64, dtype=torch.bool)
            expected[y0:y1, x0:x1] = True
            assert torch.equal(mask, expected)


def test_benchmark_model_train_step_runs_and_lr_zero_keeps_the_weights():
    bench = load_tool("benchmark_model")
    model, optimizer = bench.build_variant(bench.VARIANTS["baseline"], "cpu")
    before = {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}
    bench.train_step(model, optimizer, bench.synthetic_batch(size=64, images=1, instances=2, device="cpu"))
    grads = [p.grad for p in optimizer.param_groups[0]["params"] if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    for name, value in model.named_parameters():
        if name in before:
            assert torch.equal(value, before[name]), name


def test_benchmark_model_ratios_and_json(tmp_path, monkeypatch, capsys):
    bench = load_tool("benchmark_model")
    seconds = dict(zip(bench.VARIANTS, [2.0, 3.0, 5.0, 2.5]))
    memory = dict(zip(bench.VARIANTS, [100.0, 150.0, 400.0, 110.0]))
    monkeypatch.setattr(bench, "time_variants", lambda args: seconds)
    monkeypatch.setattr(bench, "measure_memory", lambda args: memory)
    results = bench.main(["--size", "64", "--repeats", "2", "--json", str(tmp_path / "bench.json")])
    assert json.load(open(tmp_path / "bench.json")) == results
    ratios = [(v["step_time_ratio"], v["memory_ratio"]) for v in results["variants"].values()]
    assert ratios == [(1.0, 1.0), (1.5, 1.5), (2.5, 4.0), (1.25, 1.1)]
    table = capsys.readouterr().out
    assert "| +NL (res4) | 5.000 | 2.500x | 400 | 4.00x |" in table
    assert "1 x 64x64 image(s), cpu, median of 2 interleaved steps" in table


# ----------------------------------------------------------------------------- run_demo.py


def _metrics(path, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(json.dumps(r) for r in rows) + "\n")


def test_run_demo_reads_the_last_evaluation_row(tmp_path, monkeypatch):
    demo = load_tool("run_demo")
    monkeypatch.setattr(demo, "ROOT", str(tmp_path))
    _metrics(str(tmp_path / "out" / "metrics.json"), [
        {"iteration": 9, "segm/AP": 10.0, "bbox/AP": 12.0}, {"iteration": 19, "total_loss": 1.0},
        {"iteration": 19, "segm/AP": 55.5, "bbox/AP": 60.0}, {"iteration": 20, "total_loss": 0.9},
    ])  # fmt: skip
    assert demo.final_metrics("out") == {"iteration": 19, "segm/AP": 55.5, "bbox/AP": 60.0}
    _metrics(str(tmp_path / "none" / "metrics.json"), [{"iteration": 1, "total_loss": 1.0}])
    with pytest.raises(RuntimeError, match="none/metrics.json has no evaluation results"):
        demo.final_metrics("none")


def test_run_demo_passes_the_overrides_and_prints_the_summary(tmp_path, monkeypatch, capsys):
    demo = load_tool("run_demo")
    monkeypatch.setattr(demo, "ROOT", str(tmp_path))
    commands = []

    def fake_run(command):
        commands.append(command)
        if "train_net.py" in command:
            _metrics(os.path.join(str(tmp_path), demo.OUTPUT_DIR, "metrics.json"), [{"segm/AP": 42.0, "bbox/AP": 47.5}])

    monkeypatch.setattr(demo, "run", fake_run)
    assert demo.main(["SOLVER.MAX_ITER", "7"]) == 0
    train = next(c for c in commands if "train_net.py" in c)
    assert train[-2:] == ["SOLVER.MAX_ITER", "7"] and demo.CONFIG in train
    # training processes: min(2, cores) by default, or as asked
    workers = train[train.index("--num-cpu-workers") + 1]
    assert workers == str(min(2, os.cpu_count() or 1))
    draw = next(c for c in commands if "tools/demo.py" in c)
    assert os.path.join(demo.OUTPUT_DIR, "model_final.pth") in draw and draw[-2:] == ["SOLVER.MAX_ITER", "7"]
    out = capsys.readouterr().out
    assert "val box AP   47.50" in out and "val mask AP  42.00" in out and "MISSED" in out
    commands.clear()
    assert demo.main([], num_workers=1) == 0
    train = next(c for c in commands if "train_net.py" in c)
    assert train[train.index("--num-cpu-workers") + 1] == "1"

