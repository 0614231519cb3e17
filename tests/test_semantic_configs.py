"""Every shipped semantic config builds on CPU, trains a step and runs inference.

Each config file is built as it is (ResNet-101, 512-channel head; no weights), then again with
TINY_MODEL_OVERRIDES (the same architecture, a few channels wide) for one training step (SGD
with the config's poly schedule) and one inference in the config's mode.
"""
import glob
import os

import pytest
import torch

from ccnet.engine.cli import build_config
from ccnet.layers import ContextModule, CrissCrossAttention, NonLocalBlock
from ccnet.modeling.meta_arch import CCNetSemanticSegmentor
from detectron2.modeling import build_model
from detectron2.projects.deeplab import build_lr_scheduler
from detectron2.solver import build_optimizer
from tests.conftest import REPO_ROOT

SEMANTIC_DIRS = (
    "Cityscapes-SemanticSegmentation",
    "ADE20K-SemanticSegmentation",
    "LIP-SemanticSegmentation",
    "CamVid-SemanticSegmentation",
)
CONFIGS = sorted(
    os.path.relpath(path, REPO_ROOT)
    for folder in SEMANTIC_DIRS
    for path in glob.glob(os.path.join(REPO_ROOT, "configs", folder, "*.yaml"))
    if not os.path.basename(path).startswith("Base-")
)

# A few channels wide, R-50 depth, 33x33 crops; everything else as in the config.
TINY_MODEL_OVERRIDES = [
    "MODEL.WEIGHTS", "",
    "MODEL.DEVICE", "cpu",
    "MODEL.RESNETS.DEPTH", "50",
    "MODEL.RESNETS.STEM_OUT_CHANNELS", "8",
    "MODEL.RESNETS.RES2_OUT_CHANNELS", "16",
    "MODEL.RESNETS.WIDTH_PER_GROUP", "4",
    "MODEL.CONTEXT.REDUCTION", "16",  # res5: 128 -> 8 channels
    "MODEL.CCNET.AUX_CONVS_DIM", "8",
    "MODEL.SEM_SEG_HEAD.CONVS_DIM", "8",
    "INPUT.CROP.SIZE", "(33, 33)",
]  # fmt: skip


def build_tiny_model(config, extra_overrides=()):
    cfg = build_config(os.path.join(REPO_ROOT, config), TINY_MODEL_OVERRIDES + list(extra_overrides))
    torch.manual_seed(0)
    return cfg, build_model(cfg)


def _batch(num_classes, size=33, n=2):
    torch.manual_seed(1)
    batch = []
    for _ in range(n):
        label = torch.randint(0, num_classes, (size, size))
        label[:4] = 255
        batch.append({"image": torch.randint(0, 256, (3, size, size), dtype=torch.uint8), "sem_seg": label})
    return batch


def test_there_are_configs_for_every_variant():
    for folder in SEMANTIC_DIRS:
        names = {os.path.basename(c).split("_R_")[0] for c in CONFIGS if folder in c}
        assert {"rcca_r1", "rcca_r2", "rcca_r2_ccl", "nl"} <= names, folder


def test_cityscapes_configs_follow_the_public_training_settings():
    """The settings of ../shared/notes/ccnet-paper.md ("Training settings of the public Cityscapes code")."""
    for config in (c for c in CONFIGS if c.startswith("configs/Cityscapes")):
        cfg = build_config(os.path.join(REPO_ROOT, config))
        assert cfg.DATASETS.TRAIN == ("cityscapes_fine_sem_seg_train",), config
        assert cfg.DATASETS.TEST == ("cityscapes_fine_sem_seg_val",)
        assert tuple(cfg.INPUT.CROP.SIZE) == (769, 769) and cfg.INPUT.CROP.ENABLED
        assert cfg.SOLVER.IMS_PER_BATCH == 8 and cfg.SOLVER.MAX_ITER == 60000
        assert cfg.SOLVER.BASE_LR == 0.01 and cfg.SOLVER.MOMENTUM == 0.9
        assert cfg.SOLVER.WEIGHT_DECAY in (1e-4, 5e-4)
        assert cfg.SOLVER.LR_SCHEDULER_NAME == "WarmupPolyLR" and cfg.SOLVER.POLY_LR_POWER == 0.9
        assert cfg.MODEL.RESNETS.DEPTH == 101 and cfg.MODEL.RESNETS.STEM_TYPE == "deeplab"
        assert (cfg.MODEL.RESNETS.RES4_DILATION, cfg.MODEL.RESNETS.RES5_DILATION) == (2, 4)
        assert cfg.MODEL.SEM_SEG_HEAD.LOSS_TYPE == "ohem"
        assert (cfg.MODEL.CCNET.OHEM_THRESHOLD, cfg.MODEL.CCNET.OHEM_MIN_KEPT) == (0.7, 100000)
        assert cfg.MODEL.CCNET.OHEM_REFERENCE_PIXELS == 769 * 769
        assert cfg.MODEL.CCNET.AUX_IN_FEATURE == "res4" and cfg.MODEL.CCNET.AUX_LOSS_WEIGHT == 0.4
        assert cfg.MODEL.CONTEXT.REDUCTION == 4 and cfg.MODEL.CCNET.DROPOUT == 0.1  # res5: 2048 -> 512
        assert cfg.TEST.SLIDING_WINDOW.ENABLED  # sliding 769x769 windows over 1024x2048


def _expected_context(config):
    name = os.path.basename(config)
    if name.startswith("rcca_r1"):
        return "RCCA", 1, False
    if name.startswith("rcca_r2_ccl"):
        return "RCCA", 2, True
    if name.startswith("rcca_r2"):
        return "RCCA", 2, False
    if name.startswith("nl"):
        return "NL", None, False
    return "none", None, False


@pytest.mark.parametrize("config", CONFIGS)
def test_config_builds_the_full_model(config):
    cfg = build_config(os.path.join(REPO_ROOT, config), ["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu"])
    model = build_model(cfg)
    assert isinstance(model, CCNetSemanticSegmentor)
    shapes = model.backbone.output_shape()
    assert (shapes["res5"].channels, shapes["res5"].stride, shapes["res4"].stride) == (2048, 8, 8)
    assert len(model.backbone.res4) == 23  # ResNet-101
    head = model.sem_seg_head
    assert head.context.reduce.weight.shape[:2] == (512, 2048)
    context, recurrence, ccl = _expected_context(config)
    attention = {"RCCA": CrissCrossAttention, "NL": NonLocalBlock, "none": torch.nn.Identity}[context]
    assert isinstance(head.context, ContextModule) and isinstance(head.context.attention, attention)
    if recurrence is not None:
        assert head.context.recurrence == recurrence
    assert (head.ccl_loss is not None) == ccl
    assert model.sliding_window == tuple(cfg.INPUT.CROP.SIZE)


@pytest.mark.parametrize("config", CONFIGS)
def test_config_trains_a_step_and_runs_inference(config):
    cfg, model = build_tiny_model(config)
    optimizer = build_optimizer(cfg, model)
    scheduler = build_lr_scheduler(cfg, optimizer)
    before = model.sem_seg_head.classifier.predictor.weight.detach().clone()

    model.train()
    losses = model(_batch(cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES))
    expected = {"loss_sem_seg", "loss_sem_seg_aux"} | ({"loss_ccl"} if cfg.MODEL.CCNET.CCL_ENABLED else set())
    assert set(losses) == expected
    loss = sum(losses.values())
    assert torch.isfinite(loss)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    scheduler.step()
    assert not torch.equal(before, model.sem_seg_head.classifier.predictor.weight)

    model.eval()
    with torch.no_grad():  # 50x40 > the 33x33 window: several overlapping windows
        (output,) = model([{"image": torch.randint(0, 256, (3, 40, 50), dtype=torch.uint8), "height": 20, "width": 25}])
    assert output["sem_seg"].shape == (cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES, 20, 25)
    assert torch.isfinite(output["sem_seg"]).all()
