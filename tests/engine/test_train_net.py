"""train_net.py end to end on a tiny dataset: training, metrics.json, resume, several CPU processes."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.engine import tiny_semseg

PYTHON = sys.executable


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_semseg")
    tiny_semseg.write_dataset(str(root))
    return str(root)


def run_train_net(dataset_root, output_dir, *extra, env_extra=None, wait=True):
    env = dict(os.environ, TINY_SEMSEG_ROOT=dataset_root, OMP_NUM_THREADS="1", **(env_extra or {}))
    command = [PYTHON, tiny_semseg.__file__, "--config-file", tiny_semseg.CONFIG, *extra, "OUTPUT_DIR", output_dir]
    log = open(os.path.join(os.path.dirname(output_dir), os.path.basename(output_dir) + ".log"), "w")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    if wait:
        process.wait(timeout=300)
        log.close()
        assert process.returncode == 0, open(log.name).read()[-4000:]
    return process, log.name


def read_metrics(output_dir):
    with open(os.path.join(output_dir, "metrics.json")) as f:
        return [json.loads(line) for line in f]


def test_training_writes_metrics_and_final_eval(dataset_root, tmp_path):
    out = str(tmp_path / "run")
    run_train_net(dataset_root, out)
    rows = read_metrics(out)
    assert max(row["iteration"] for row in rows if "total_loss" in row) == 19
    assert 0.0 <= rows[-1]["sem_seg/mIoU"] <= 100.0
    checkpoint = torch.load(os.path.join(out, "model_final.pth"), weights_only=True)
    assert checkpoint["iteration"] == 19
    assert checkpoint["trainer"]["hooks"]["LRScheduler"]["last_epoch"] == 20
    momentum = checkpoint["trainer"]["_trainer"]["optimizer"]["state"]
    assert len(momentum) > 0 and all("momentum_buffer" in s for s in momentum.values())


def test_eval_only_loads_weights_and_appends_metrics(dataset_root, tmp_path):
    out = str(tmp_path / "train")
    run_train_net(dataset_root, out, "SOLVER.MAX_ITER", "4")
    evaluated = str(tmp_path / "eval")
    run_train_net(dataset_root, evaluated, "--eval-only", "MODEL.WEIGHTS", os.path.join(out, "model_final.pth"))
    (row,) = read_metrics(evaluated)
    assert row["iteration"] == 3 and "sem_seg/mIoU" in row


def test_killed_run_resumes_at_the_right_iteration(dataset_root, tmp_path):
    out = str(tmp_path / "resume")
    long_run = ("SOLVER.MAX_ITER", "80", "SOLVER.CHECKPOINT_PERIOD", "5")
    process, _ = run_train_net(dataset_root, out, *long_run, wait=False)
    tag = os.path.join(out, "last_checkpoint")
    deadline = time.time() + 240
    while not (os.path.exists(tag) and open(tag).read().strip() >= "model_0000009.pth"):
        assert process.poll() is None, "training ended before it could be killed"
        assert time.time() < deadline, "no checkpoint written in time"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved = open(tag).read().strip()
    saved_iteration = torch.load(os.path.join(out, saved), weights_only=True)["iteration"]
    assert saved == f"model_{saved_iteration:07d}.pth"

    assert saved_iteration < 79, "the run finished before it was killed"

    _, log = run_train_net(dataset_root, out, "--resume", *long_run)
    text = open(log).read()
    assert f"Starting training from iteration {saved_iteration + 1}" in text
    final = torch.load(os.path.join(out, "model_final.pth"), weights_only=True)
    assert final["iteration"] == 79
    # The scheduler and the optimizer continued too.
    assert final["trainer"]["hooks"]["LRScheduler"]["last_epoch"] == 80
    assert len(final["trainer"]["_trainer"]["optimizer"]["state"]) > 0


def test_two_cpu_processes_keep_identical_parameters(dataset_root, tmp_path):
    out = str(tmp_path / "ddp")
    run_train_net(
        dataset_root, out, "--num-cpu-workers", "2", "SOLVER.MAX_ITER", "4",
        env_extra={"TINY_SEMSEG_DUMP_PARAMETERS": "1"},
    )
    ranks = [torch.load(os.path.join(out, f"parameters_rank{r}_of_2.pth"), weights_only=True) for r in (0, 1)]
    initial = torch.load(os.path.join(out, "model_final.pth"), weights_only=True)["model"]
    assert ranks[0].keys() == ranks[1].keys() and len(ranks[0]) > 0
    changed = 0
    for name, value in ranks[0].items():
        torch.testing.assert_close(value, ranks[1][name], rtol=0, atol=0, msg=name)
        plain = name.removeprefix("module.")
        torch.testing.assert_close(value, initial[plain], rtol=0, atol=0)
    # The processes really trained (parameters moved away from a fresh model's).
    from ccnet.engine import Trainer
    from ccnet.engine.cli import build_config

    fresh = Trainer.build_model(build_config(tiny_semseg.CONFIG, ["DATASETS.TRAIN", "()", "DATASETS.TEST", "()"]))
    for name, value in fresh.named_parameters():
        changed += not torch.equal(value, ranks[0]["module." + name])
    assert changed > 0
