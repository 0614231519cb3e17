"""The Trainer's parts one by one: evaluator arguments, hook order, optimizer arguments, and a
checkpoint without optimizer state."""
import logging
import os

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine.hooks import PeriodicWriter

from ccnet.compat import has_compiled_ops
from ccnet.engine import Trainer, trainer as trainer_module
from ccnet.engine.cli import build_config
from ccnet.engine.hooks import AttentionStatsHook
from tests.engine import tiny_semseg


class _Recorder:
    """Stands in for an evaluator class: keeps its arguments."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


@pytest.mark.parametrize(
    "evaluator_type, patched, heads, tasks",
    [
        ("coco", "COCOEvaluator", [], ("bbox",)),
        ("coco", "COCOEvaluator", ["MODEL.MASK_ON", True], ("bbox", "segm")),
        ("coco", "COCOEvaluator", ["MODEL.MASK_ON", True, "MODEL.KEYPOINT_ON", True], ("bbox", "segm", "keypoints")),
        ("sem_seg", "SemSegEvaluator", [], None),
    ],
)
def test_evaluator_arguments_and_default_output_folder(monkeypatch, tmp_path, evaluator_type, patched, heads, tasks):
    monkeypatch.setattr(trainer_module, patched, _Recorder)
    name = f"trainer_parts_{evaluator_type}"
    DatasetCatalog.register(name, lambda: [])
    MetadataCatalog.get(name).set(evaluator_type=evaluator_type)
    cfg = build_config(None, ["OUTPUT_DIR", str(tmp_path), *heads])
    try:
        (evaluator,) = Trainer.build_evaluator(cfg, name)._evaluators
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    assert evaluator.args == (name,)
    expected = {"output_dir": os.path.join(str(tmp_path), "inference", name)}
    # COCO: Detectron2's C++ COCOeval only where the compiled ops exist, and the tasks of the
    # model's heads whatever it predicts; sem_seg: gathered over processes
    if evaluator_type == "coco":
        expected.update({"use_fast_impl": has_compiled_ops(), "tasks": tasks})
    else:
        expected.update({"distributed": True})
    assert evaluator.kwargs == expected


@pytest.fixture
def tiny_trainer(tmp_path):
    root = str(tmp_path / "data")
    tiny_semseg.write_dataset(root, num_images=2)
    tiny_semseg.register(root)
    cfg = build_config(
        tiny_semseg.CONFIG,
        ["OUTPUT_DIR", str(tmp_path / "out"), "SOLVER.MOMENTUM", 0.8, "SOLVER.NESTEROV", True,
         "SOLVER.WEIGHT_DECAY", 3e-4, "SOLVER.WEIGHT_DECAY_NORM", 1e-5, "SOLVER.WEIGHT_DECAY_BIAS", 2e-4,
         "SOLVER.BIAS_LR_FACTOR", 2.0, "SOLVER.BASE_LR", 0.02, "TEST.EVAL_PERIOD", 0],
    )  # fmt: skip
    return cfg, Trainer(cfg)


def test_hooks_optimizer_and_a_checkpoint_without_optimizer_state(tiny_trainer, caplog):
    cfg, trainer = tiny_trainer
    hooks = trainer._hooks
    writer = next(i for i, h in enumerate(hooks) if isinstance(h, PeriodicWriter))
    stats = hooks[writer - 1]
    assert isinstance(stats, AttentionStatsHook) and stats.period == hooks[writer]._period  # just before, same period
    assert sum(isinstance(h, AttentionStatsHook) for h in hooks) == 1

    optimizer = trainer.optimizer
    assert type(optimizer) is torch.optim.SGD
    groups = optimizer.param_groups
    assert {g["momentum"] for g in groups} == {0.8} and {g["nesterov"] for g in groups} == {True}
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    # Detectron2's rules, from the SOLVER keys: norm weights and biases have their own weight
    # decay, biases their own learning rate (gamma's factor: test_attention_stats)
    norms = {id(p) for m in trainer.model.modules() if isinstance(m, torch.nn.GroupNorm) for p in m.parameters()}
    assert norms
    for g in groups:
        for p in g["params"]:
            is_bias = names[id(p)].endswith(".bias")  # the bias rule wins over the norm rule
            decay = 2e-4 if is_bias else 1e-5 if id(p) in norms else 3e-4
            assert g["weight_decay"] == pytest.approx(decay), names[id(p)]
            assert g["initial_lr"] == pytest.approx(0.04 if is_bias else 0.02), names[id(p)]  # before warm-up
    assert {id(p) for g in groups for p in g["params"]} == set(names)  # every parameter trained

    lrs = [g["lr"] for g in groups]
    with caplog.at_level(logging.WARNING, logger="ccnet.engine.trainer"):
        trainer.load_state_dict({"iteration": 7, "hooks": {}})  # e.g. another project's checkpoint
    assert trainer.iter == 7
    assert "no optimizer state" in caplog.text and "momentum starts from zero" in caplog.text
    assert [g["lr"] for g in optimizer.param_groups] == lrs and not optimizer.state  # left as built


def test_hooks_without_writers_still_log_the_attention(tiny_trainer, monkeypatch):
    # A process other than the main one gets no writers: the stats hook comes last, period 20.
    from detectron2.engine import defaults

    cfg, trainer = tiny_trainer
    monkeypatch.setattr(defaults.comm, "is_main_process", lambda: False)
    hooks = trainer.build_hooks()
    assert not any(isinstance(h, PeriodicWriter) for h in hooks)
    assert isinstance(hooks[-1], AttentionStatsHook) and hooks[-1].period == 20


@pytest.mark.parametrize("evaluator_type, key", [("coco", "ROI_HEADS"), ("sem_seg", "SEM_SEG_HEAD")])
def test_class_count_is_checked_against_the_head_of_the_dataset_type(evaluator_type, key):
    from ccnet.engine.trainer import verify_datasets

    name = f"trainer_parts_classes_{evaluator_type}"
    DatasetCatalog.register(name, lambda: [])
    classes = {"thing_classes" if evaluator_type == "coco" else "stuff_classes": ["a", "b", "c"]}
    MetadataCatalog.get(name).set(evaluator_type=evaluator_type, check_num_classes=True, **classes)
    other = "SEM_SEG_HEAD" if key == "ROI_HEADS" else "ROI_HEADS"
    try:
        # the other head's count does not matter
        verify_datasets(build_config(None, ["DATASETS.TRAIN", f"('{name}',)", "DATASETS.TEST", "()",
                                            f"MODEL.{key}.NUM_CLASSES", 3, f"MODEL.{other}.NUM_CLASSES", 7]))  # fmt: skip
        with pytest.raises(ValueError, match=rf"has 3 classes .* but MODEL\.{key}\.NUM_CLASSES is 7: set MODEL\.{key}\.NUM_CLASSES 3"):
            verify_datasets(build_config(None, ["DATASETS.TRAIN", f"('{name}',)", "DATASETS.TEST", "()",
                                                f"MODEL.{key}.NUM_CLASSES", 7, f"MODEL.{other}.NUM_CLASSES", 3]))  # fmt: skip
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
