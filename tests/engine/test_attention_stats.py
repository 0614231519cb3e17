"""The attention diagnostics and levers of the Trainer: logged gamma / entropy, gamma's own
learning rate and initial value, the CCL warm-up."""
import json
import os
import subprocess
import sys

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from ccnet.engine import Trainer
from ccnet.engine.cli import build_config
from tests.conftest import REPO_ROOT

TEMPORAL = os.path.join(REPO_ROOT, "configs", "Synthetic-Temporal", "ccnet_t5.yaml")
LONG_RANGE_CCL = os.path.join(REPO_ROOT, "configs", "Synthetic-LongRange", "rcca_r2_ccl.yaml")
GAMMA = "sem_seg_head.context.attention.gamma"


def test_training_logs_gamma_entropy_and_residual_of_every_block(tmp_path):
    output = tmp_path / "run"
    command = [
        sys.executable, os.path.join(REPO_ROOT, "train_net.py"), "--config-file", TEMPORAL,
        "OUTPUT_DIR", str(output), "SOLVER.MAX_ITER", "30", "SOLVER.IMS_PER_BATCH", "2",
        "MODEL.CONTEXT.GAMMA_INIT", "0.5", "SOLVER.GAMMA_LR_FACTOR", "20.0",
    ]  # fmt: skip
    env = dict(os.environ, DETECTRON2_DATASETS=str(tmp_path / "datasets"), OMP_NUM_THREADS="1")
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert result.returncode == 0, result.stdout[-4000:]
    with open(output / "metrics.json") as f:
        rows = [row for row in map(json.loads, f) if "total_loss" in row]
    prefix = "attention/sem_seg_head.context.attention/"
    # The writer's period (20) and the last iteration: the rows hold the attention's state.
    assert [row["iteration"] for row in rows] == [19, 29]
    for row in rows:
        assert 0 < row[prefix + "entropy"] <= 1 and row[prefix + "residual"] > 0
    final = torch.load(output / "model_final.pth", weights_only=False)["model"][GAMMA]
    assert rows[-1][prefix + "gamma"] == pytest.approx(float(final), abs=1e-7)  # after the last step
    assert rows[0][prefix + "gamma"] != rows[-1][prefix + "gamma"] != 0.5  # it is read each period


def test_gamma_init_sets_the_2d_and_3d_heads_and_leaves_everything_else():
    for config in (TEMPORAL, LONG_RANGE_CCL):
        torch.manual_seed(0)
        default = build_model(build_config(config, ["MODEL.CONTEXT.GAMMA_INIT", "0.0"])).state_dict()
        torch.manual_seed(0)
        opened = build_model(build_config(config, ["MODEL.CONTEXT.GAMMA_INIT", "0.25"])).state_dict()
        assert float(default[GAMMA]) == 0.0 and float(opened[GAMMA]) == 0.25  # the paper's 0 / the key's value
        assert all(torch.equal(default[k], opened[k]) for k in default if k != GAMMA)
    with pytest.raises(ValueError, match="gamma_init=1.0 needs an attention with a residual scale gamma"):
        build_model(build_config(LONG_RANGE_CCL, ["MODEL.CONTEXT.NAME", "NL", "MODEL.CONTEXT.GAMMA_INIT", "1.0"]))


def test_gamma_lr_factor_gives_gamma_its_own_learning_rate():
    cfg = build_config(TEMPORAL, ["SOLVER.GAMMA_LR_FACTOR", "10.0"])
    model = build_model(cfg)
    optimizer = Trainer.build_optimizer(cfg, model)
    gamma = model.sem_seg_head.context.attention.gamma
    rates = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            rates[id(p)] = group["lr"]
    assert rates[id(gamma)] == pytest.approx(10 * cfg.SOLVER.BASE_LR)
    assert rates[id(model.sem_seg_head.context.attention.value.weight)] == pytest.approx(cfg.SOLVER.BASE_LR)
    assert len(rates) == len(list(model.parameters()))


def test_ccl_warmup_ramps_the_ccl_weight_with_the_iteration():
    images = [{"image": torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8), "sem_seg": torch.randint(0, 7, (64, 64))}]

    def ccl_loss(warmup, iteration):
        torch.manual_seed(0)
        model = build_model(build_config(LONG_RANGE_CCL, ["MODEL.CCNET.CCL_WARMUP_ITERS", str(warmup)]))
        with EventStorage(start_iter=iteration):
            return model(images)["loss_ccl"].item()

    full = ccl_loss(0, 0)
    assert full > 0
    assert ccl_loss(100, 0) == pytest.approx(full / 100)
    assert ccl_loss(100, 49) == pytest.approx(full / 2)
    assert ccl_loss(100, 150) == pytest.approx(full)
