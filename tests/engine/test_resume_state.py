"""``--resume`` restores the SGD momentum and the WarmupPolyLR schedule, proven by the next step.

A run of a 12-iteration WarmupPolyLR schedule stops after 6 iterations (its checkpoint is
``model_final.pth``); a new Trainer resumes from it.  Then both take one SGD step on the same
batch: the resumed step equals the uninterrupted one only if the momentum buffers *and* the
learning rate were restored (a momentum that restarts from zero, or a schedule that restarts
at warm-up, moves the parameters elsewhere).  Runs in-process on the tiny dataset (~ seconds).
"""
import pytest
import torch

from ccnet.engine import Trainer
from ccnet.engine.cli import build_config
from tests.engine import tiny_semseg

BASE_LR, MAX_ITER, STOP, WARMUP = 0.01, 12, 6, 5


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_semseg")
    tiny_semseg.write_dataset(str(root))
    tiny_semseg.register(str(root))


def _trainer(output_dir):
    cfg = build_config(
        tiny_semseg.CONFIG,
        [
            "SOLVER.LR_SCHEDULER_NAME", "WarmupPolyLR", "SOLVER.BASE_LR", BASE_LR, "SOLVER.MAX_ITER", MAX_ITER,
            "SOLVER.WARMUP_ITERS", WARMUP, "SOLVER.POLY_LR_POWER", 0.9, "SOLVER.MOMENTUM", 0.9,
            "SOLVER.CHECKPOINT_PERIOD", 1000, "DATASETS.TEST", "()", "OUTPUT_DIR", output_dir,
        ],
    )  # fmt: skip
    torch.manual_seed(0)
    return Trainer(cfg)


def _sgd_step(trainer, batch):
    model, optimizer = trainer.model, trainer.optimizer
    model.train()
    optimizer.zero_grad()
    sum(model(batch).values()).backward()
    optimizer.step()
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def test_resume_restores_momentum_and_poly_schedule(registered, tmp_path):
    out = str(tmp_path / "run")
    uninterrupted = _trainer(out)
    uninterrupted.max_iter = STOP  # the schedule still runs to MAX_ITER: the run is cut short
    uninterrupted.train()
    saved = torch.load(f"{out}/model_final.pth", weights_only=True)
    assert saved["iteration"] == STOP - 1

    resumed = _trainer(out)
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == STOP

    # The poly schedule by hand: warm-up is over (6 >= 5), lr = base * (1 - 6/12)^0.9.
    expected_lr = BASE_LR * (1 - STOP / MAX_ITER) ** 0.9
    assert resumed.scheduler.last_epoch == STOP
    for group in resumed.optimizer.param_groups:
        assert group["lr"] == pytest.approx(expected_lr, rel=1e-12)  # one float64 pow
    assert resumed.scheduler.get_last_lr()[0] == pytest.approx(expected_lr, rel=1e-12)

    # Every parameter has a momentum buffer, equal to the uninterrupted run's (bitwise: saved as is).
    before = uninterrupted.optimizer.state_dict()["state"]
    after = resumed.optimizer.state_dict()["state"]
    assert len(after) == len(list(resumed.model.parameters())) and after.keys() == before.keys()
    for key in before:
        assert torch.equal(after[key]["momentum_buffer"], before[key]["momentum_buffer"]), key

    # The next step: same weights, same batch -> the same parameters after it.
    batch = next(iter(uninterrupted.build_train_loader(uninterrupted.cfg)))
    expected = _sgd_step(uninterrupted, batch)
    got = _sgd_step(resumed, batch)
    moved = 0
    for name, value in expected.items():
        # Same float32 operations in the same order on the same inputs: bitwise equal.
        torch.testing.assert_close(got[name], value, rtol=0, atol=0, msg=name)
        moved += not torch.equal(value, saved["model"][name])
    assert moved > 0
