"""tools/measure.py: interleaved medians, peak memory of known allocations in a fresh process,
FLOPs against hand counts, and the command line every benchmark tool shares."""
import argparse
import importlib.util
import textwrap

import pytest
import torch
from torch import nn

from tests.conftest import load_tool

measure = load_tool("measure")

BENCHMARK_TOOLS = [
    "benchmark_attention",
    "benchmark_model",
    "benchmark_semantic_model",
    "benchmark_export",
    "context_benchmark",
    "temporal_benchmark",
    "ccl_diagnostics",
    "matmul_rate",
]

# A module of prepare functions in a file of its own: the measuring process loads it by path.
PREPARE_MODULE = '''
import torch

MB = 2**20


def allocate(mb_before, mb_spike, mb_during, chunk_mb):
    """Holds mb_before MB and frees a spike of mb_spike MB, then each call fills mb_during MB
    in chunks of chunk_mb and frees them."""
    held = torch.ones(int(mb_before * MB / 4))
    spike = torch.ones(int(mb_spike * MB / 4))  # a peak before the call: not counted
    del spike

    def fn():
        chunks = [torch.ones(int(chunk_mb * MB / 4)) for _ in range(int(mb_during / chunk_mb))]
        del chunks

    fn.held = held
    fn()  # warm-up: the freed chunks must not hide the measured call's peak
    return fn


def fail():
    raise ValueError("planted failure")
'''


@pytest.fixture(scope="module")
def prepare_module(tmp_path_factory):
    path = tmp_path_factory.mktemp("prepare") / "prepare_functions.py"
    path.write_text(PREPARE_MODULE)
    spec = importlib.util.spec_from_file_location("prepare_functions", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_interleaved_medians_warm_up_interleave_and_take_the_median(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(measure.time, "perf_counter", lambda: clock[0])
    calls = []
    durations = {"a": iter([9.0, 3.0, 1.0, 2.0]), "b": iter([0.5, 5.0, 7.0, 6.0])}

    def run(name):
        calls.append((name, torch.randint(1000, ()).item()))  # the round's seed decides the draw
        clock[0] += next(durations[name])

    medians = measure.interleaved_medians({"a": lambda: run("a"), "b": lambda: run("b")}, repeats=3)
    assert medians == {"a": 2.0, "b": 6.0}  # the warm-up (9.0, 0.5) is not counted
    assert [name for name, _ in calls] == ["a", "b"] * 4
    draws = [draw for _, draw in calls]
    assert draws[0::2] == draws[1::2]  # both runs of a round draw the same numbers...
    assert len(set(draws[0::2])) == 4  # ...and every round other ones


def test_interleaved_medians_time_slow_runs_in_fewer_rounds(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(measure.time, "perf_counter", lambda: clock[0])
    calls = {"slow": 0, "fast": 0}

    def run(name, seconds):
        calls[name] += 1
        clock[0] += seconds

    runs = {"slow": lambda: run("slow", 2.0), "fast": lambda: run("fast", 0.1)}
    measure.interleaved_medians(runs, repeats=5, slow_s=1.5)
    assert calls == {"slow": 1 + measure.SLOW_ROUNDS, "fast": 1 + 5}


def test_peak_memory_counts_the_call_not_what_existed_before(prepare_module):
    peak = measure.peak_memory_mb(prepare_module.allocate, 64, 96, 32, 32)
    # 32 MB of touched pages; Linux syncs its per-thread resident-set counters every 64 page
    # faults (256 kB a thread either way), and the interpreter's own work adds a few hundred kB.
    assert 31.5 <= peak <= 33.5
    assert measure.peak_memory_mb(prepare_module.allocate, 64, 96, 0, 1) <= 1.0


def test_peak_memory_is_not_hidden_by_memory_freed_in_the_warm_up(prepare_module):
    # Freeing the 24 MB spike raises glibc's own mmap threshold to 24 MB: from then on, 1 MB
    # chunks freed by the warm-up would stay in its heap and be reused, unseen, by the call.
    peak = measure.peak_memory_mb(prepare_module.allocate, 0, 24, 16, 1)
    assert 15.5 <= peak <= 17.5  # the counters' slack as above


def test_peak_memory_names_a_failing_measurement(prepare_module):
    with pytest.raises(RuntimeError, match=r"(?s)peak memory of fail\(\) on cpu failed.*planted failure"):
        measure.peak_memory_mb(prepare_module.fail)
    with pytest.raises(ValueError, match="module-level function"):
        measure.peak_memory_mb(lambda: (lambda: None))


@pytest.mark.cuda
def test_peak_memory_on_cuda_is_the_allocator_peak(prepare_module, tmp_path):
    path = tmp_path / "cuda_prepare.py"
    path.write_text(
        textwrap.dedent(
            """
            import torch

            def allocate():
                held = torch.ones(2**20, device="cuda")
                def fn():
                    x = torch.empty(2**22, device="cuda")  # 16 MB
                    del x
                fn.held = held
                return fn
            """
        )
    )
    spec = importlib.util.spec_from_file_location("cuda_prepare", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert measure.peak_memory_mb(module.allocate, device="cuda") == 16.0


def test_gflops_count_one_per_multiply_add():
    model = nn.Sequential(nn.Linear(8, 4, bias=False), nn.Linear(4, 3, bias=False))
    counts = measure.gflops(model, (torch.randn(2, 8),))
    exact = dict(rel=1e-12)  # integer counts / 1e9 in float64: only the division rounds
    assert counts[""] == pytest.approx(2 * (8 * 4 + 4 * 3) / 1e9, **exact)
    assert counts["0"] == pytest.approx(2 * 8 * 4 / 1e9, **exact)
    a, b = torch.randn(3, 4, requires_grad=True), torch.randn(4, 5)
    products = 2 * 3 * 4 * 5 / 1e9  # a @ b, and its gradient for a
    assert measure.gemm_gflops(lambda: (a @ b).sum().backward()) == pytest.approx(products, **exact)


def test_matmul_rate_counts_two_flops_per_multiply_add():
    rate = measure.matmul_rate(size=64, repeats=3)
    assert len(rate["seconds"]) == 3 and rate["threads"] == 1
    assert rate["gflops_best"] == pytest.approx(2 * 64**3 / min(rate["seconds"]) / 1e9)


@pytest.mark.parametrize("tool", BENCHMARK_TOOLS)
def test_every_benchmark_tool_writes_json_to_a_file(tool):
    args = load_tool(tool).argument_parser().parse_args(["--json", "out.json"])
    assert args.json == "out.json"


def test_device_repeats_and_threads_mean_the_same_everywhere(capsys):
    spelled = {name: load_tool(name).argument_parser() for name in BENCHMARK_TOOLS}
    for name, parser in spelled.items():
        options = {o for action in parser._actions for o in action.option_strings}
        assert "--rounds" not in options, name  # one spelling: --repeats
        if "--repeats" in options:
            assert parser.parse_args(["--repeats", "4"]).repeats == 4
            with pytest.raises(SystemExit):
                parser.parse_args(["--repeats", "0"])
        if "--device" in options and not torch.cuda.is_available():
            with pytest.raises(SystemExit):
                parser.parse_args(["--device", "cuda"])
            assert "CUDA is not available" in capsys.readouterr().err
    assert spelled["benchmark_attention"].parse_args(["--threads", "1,2"]).threads == [1, 2]
    assert spelled["benchmark_export"].parse_args(["--threads", "2"]).threads == 2
    with pytest.raises(SystemExit):
        spelled["benchmark_model"].parse_args(["--threads", "two"])
    parser = argparse.ArgumentParser()
    measure.add_device_argument(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["--device", "gpu"])
    assert "--device takes cpu, cuda or cuda:N" in capsys.readouterr().err
