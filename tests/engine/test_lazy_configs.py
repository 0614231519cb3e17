"""The LazyConfig (.py) configs: the same models as their YAML twins; they train and evaluate."""
import json
import os
import subprocess
import sys

import pytest
import torch
from detectron2.config import LazyConfig, instantiate
from detectron2.modeling import build_model

from ccnet.engine.cli import build_config
from ccnet.engine.lazy import load_config
from tests.conftest import REPO_ROOT
from tests.engine import lazy_tiny

COCO = os.path.join(REPO_ROOT, "configs", "COCO-InstanceSegmentation")
CITYSCAPES = os.path.join(REPO_ROOT, "configs", "Cityscapes-SemanticSegmentation")
INSTANCE = ["mask_rcnn_R_50_FPN_1x_rcca", "mask_rcnn_R_50_FPN_1x_rcca_fpn"]
SEMANTIC = ["rcca_r2_R_101_OS8_60k"]
# Same class count on both sides, so that random weights give detections to compare.
YAML_SMALL = {"instance": ["MODEL.ROI_HEADS.NUM_CLASSES", "4"], "semantic": ["MODEL.RESNETS.NORM", "BN", "MODEL.SEM_SEG_HEAD.NORM", "BN", "MODEL.CONTEXT.NORM", "BN"]}
LAZY_SMALL = {
    "instance": ["model.roi_heads.num_classes=4"],
    "semantic": ["model.backbone.norm='BN'", "model.sem_seg_head.norm='BN'", "model.sem_seg_head.context_norm='BN'"],
}


def twins(kind, name):
    folder = COCO if kind == "instance" else CITYSCAPES
    return os.path.join(folder, name + ".yaml"), os.path.join(folder, name + ".py")


def build_both(kind, name, small=True):
    yaml_file, py_file = twins(kind, name)
    torch.manual_seed(0)
    yaml_model = build_model(build_config(yaml_file, ["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu"] + (YAML_SMALL[kind] if small else [])))
    lazy_model = instantiate(load_config(py_file, LAZY_SMALL[kind] if small else []).model)
    return yaml_model, lazy_model


def shapes(model):
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


CASES = [("instance", n) for n in INSTANCE] + [("semantic", n) for n in SEMANTIC]


@pytest.mark.parametrize("kind, name", CASES)
def test_lazy_config_builds_the_yaml_twins_model(kind, name):
    """Same parameter and buffer names and shapes as the YAML config (as shipped: GN/FrozenBN/SyncBN,
    80 or 19 classes), and the same outputs from the same weights."""
    yaml_model, lazy_model = build_both(kind, name, small=False)
    assert shapes(lazy_model) == shapes(yaml_model)
    frozen = {n for n, p in yaml_model.named_parameters() if not p.requires_grad}
    assert {n for n, p in lazy_model.named_parameters() if not p.requires_grad} == frozen  # FREEZE_AT 2 / 0
    where = {"mask_rcnn_R_50_FPN_1x_rcca": "backbone.bottom_up.contexts.res4_4.rcca.attention.",
             "mask_rcnn_R_50_FPN_1x_rcca_fpn": "backbone.lateral_contexts.res5.rcca.attention.",
             "rcca_r2_R_101_OS8_60k": "sem_seg_head.context.attention."}[name]  # fmt: skip
    assert any(n.startswith(where) for n in shapes(lazy_model))

    yaml_model, lazy_model = build_both(kind, name)
    lazy_model.load_state_dict(yaml_model.state_dict())
    yaml_model.eval(), lazy_model.eval()
    image = torch.randint(0, 256, (3, 64, 96), generator=torch.Generator().manual_seed(0)).float()
    with torch.no_grad():
        (expected,), (actual,) = yaml_model([{"image": image}]), lazy_model([{"image": image}])
    if kind == "instance":
        expected, actual = expected["instances"], actual["instances"]
        assert len(expected) > 0
        for field in ("pred_boxes", "scores", "pred_classes", "pred_masks"):
            a, b = expected.get(field), actual.get(field)
            a, b = (a.tensor, b.tensor) if field == "pred_boxes" else (a, b)
            torch.testing.assert_close(b, a, msg=field)
    else:
        torch.testing.assert_close(actual["sem_seg"], expected["sem_seg"])


def test_lazy_semantic_schedule_and_optimizer_match_the_yaml():
    """Poly LR (power 0.9, no warm-up) and SGD settings as the YAML's Trainer builds them."""
    from ccnet.engine import Trainer

    yaml_file, py_file = twins("semantic", SEMANTIC[0])
    cfg = build_config(yaml_file, ["MODEL.WEIGHTS", "", "SOLVER.MAX_ITER", "100"])
    lazy = load_config(py_file, ["train.max_iter=100"])
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    yaml_optimizer = Trainer.build_optimizer(cfg, model)
    lazy.optimizer.params.model = model
    lazy_optimizer = instantiate(lazy.optimizer)
    for key in ("lr", "momentum", "weight_decay", "nesterov"):
        assert [g[key] for g in lazy_optimizer.param_groups] == [g[key] for g in yaml_optimizer.param_groups], key
    scheduler = Trainer.build_lr_scheduler(cfg, yaml_optimizer)
    multiplier = instantiate(lazy.lr_multiplier)
    for iteration in range(100):
        assert multiplier(iteration / 100) * 0.01 == pytest.approx(scheduler.get_last_lr()[0], rel=1e-6), iteration
        yaml_optimizer.step()
        scheduler.step()


# Small enough to train a few steps and evaluate on CPU in seconds (no ImageNet weights here).
RUN_SMALL = {
    "instance": [
        "dataloader.train.dataset.names=tiny_coco_train", "dataloader.test.dataset.names=tiny_coco_val",
        "dataloader.train.mapper.augmentations.0.short_edge_length=[96]", "dataloader.train.mapper.augmentations.0.max_size=96",
        "dataloader.test.mapper.augmentations.0.short_edge_length=96", "dataloader.test.mapper.augmentations.0.max_size=96",
        "dataloader.train.mapper.instance_mask_format=bitmask",  # the generated masks are RLE
        # GN: an untrained FrozenBN R-50 normalises nothing, and its outputs overflow.
        "model.backbone.bottom_up.stem.norm=GN", "model.backbone.bottom_up.stages.norm=GN",
        "model.roi_heads.num_classes=4", "model.roi_heads.batch_size_per_image=16",
        "model.roi_heads.box_predictor.test_score_thresh=0.0",  # detections to evaluate, even untrained
        "model.proposal_generator.pre_nms_topk=[64,64]", "model.proposal_generator.post_nms_topk=[16,16]",
    ],
    "semantic": [
        "dataloader.train.dataset.names=tiny_semseg_train", "dataloader.test.dataset.names=tiny_semseg_val",
        "dataloader.train.mapper.augmentations.0.short_edge_length=[64,64]",
        "dataloader.test.mapper.augmentations.0.short_edge_length=64",
        "dataloader.train.mapper.num_classes=3", "model.sem_seg_head.num_classes=3",
        "model.backbone.norm='BN'", "model.sem_seg_head.norm='BN'", "model.sem_seg_head.context_norm='BN'",
        "model.backbone.depth=50",
        "model.sem_seg_head.ohem.min_kept=100",
    ],
}  # fmt: skip
COMMON = ["train.max_iter=4", "train.seed=0", "optimizer.lr=1e-4", "train.init_checkpoint=''", "train.device=cpu", "dataloader.train.total_batch_size=1",
          "dataloader.train.num_workers=0", "dataloader.test.num_workers=0", "train.log_period=4"]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("lazy_tiny"))
    lazy_tiny.write_datasets(root)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("kind, name", [("instance", INSTANCE[0]), ("instance", INSTANCE[1]), ("semantic", SEMANTIC[0])])
def test_lazy_config_trains_a_step_and_evaluates(kind, name, tiny_root, tmp_path):
    out = str(tmp_path / "out")
    env = dict(os.environ, LAZY_TINY_ROOT=tiny_root, OMP_NUM_THREADS="1")

    def run(*flags_and_overrides):
        command = [sys.executable, lazy_tiny.__file__, "--config-file", twins(kind, name)[1], *flags_and_overrides]
        result = subprocess.run(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert result.returncode == 0, result.stdout[-4000:]
        return result.stdout

    overrides = [*COMMON, *RUN_SMALL[kind]]
    log = run(*overrides, f"train.output_dir={out}")
    assert "eta: " in log  # Detectron2's remaining-time estimate, after the first logging period
    with open(os.path.join(out, "metrics.json")) as f:
        rows = [json.loads(line) for line in f]
    assert any("total_loss" in row for row in rows)
    metric = "segm/AP" if kind == "instance" else "sem_seg/mIoU"
    assert metric in rows[-1]
    checkpoint = torch.load(os.path.join(out, "model_final.pth"), weights_only=True)
    assert checkpoint["iteration"] == 3 and "optimizer" in checkpoint["trainer"]
    # --eval-only with the trained weights appends its results like training does.
    evaluated = str(tmp_path / "eval")
    run("--eval-only", *overrides, f"train.init_checkpoint={os.path.join(out, 'model_final.pth')}", f"train.output_dir={evaluated}")
    with open(os.path.join(evaluated, "metrics.json")) as f:
        (row,) = [json.loads(line) for line in f]
    assert row["iteration"] == 3 and row[metric] == pytest.approx(rows[-1][metric])


def test_lazy_configs_have_yaml_twins():
    for kind, name in CASES:
        assert all(os.path.isfile(path) for path in twins(kind, name))
    assert LazyConfig.load(twins("instance", INSTANCE[0])[1]).train.init_checkpoint.endswith("MSRA/R-50.pkl")
