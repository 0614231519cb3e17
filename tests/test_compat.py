"""Each fix in ccnet.compat: a test that the problem exists here and one that the fix works."""
import importlib.util
import os
import pickle
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from ccnet import compat
from tests.conftest import fresh_python

needs_missing_ops = pytest.mark.skipif(
    compat.has_compiled_ops(), reason="Detectron2 has its compiled ops: the stand-in is not installed"
)


# --- detectron2._C ---------------------------------------------------------------------------


@needs_missing_ops
def test_detectron2_layers_do_not_import_without_the_fix():
    result = fresh_python("import detectron2.layers")
    assert result.returncode != 0 and "_C" in result.stderr


def test_detectron2_modules_import_with_the_fix():
    result = fresh_python(
        "from ccnet import compat; compat.apply(); import detectron2.layers, detectron2.structures, "
        "detectron2.evaluation, detectron2.data, detectron2.engine, detectron2.modeling; print('ok')"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@needs_missing_ops
def test_rotated_box_iou_names_the_op_and_the_fix():
    from detectron2.layers.rotated_boxes import pairwise_iou_rotated

    boxes = torch.tensor([[5.0, 5.0, 4.0, 4.0, 30.0]])
    with pytest.raises(compat.MissingCompiledOpError, match=r"box_iou_rotated.*CCNET_DETECTRON2=upstream"):
        pairwise_iou_rotated(boxes, boxes)


@needs_missing_ops
def test_rotated_nms_names_the_op():
    from detectron2.layers import batched_nms_rotated

    with pytest.raises(compat.MissingCompiledOpError, match="nms_rotated"):
        batched_nms_rotated(torch.rand(3, 5), torch.rand(3), torch.zeros(3), 0.5)


@needs_missing_ops
def test_deformable_conv_names_the_op():
    # DeformConv refuses CPU tensors before reaching _C; on CUDA it calls this op.
    from detectron2.layers import deform_conv

    with pytest.raises(compat.MissingCompiledOpError, match=r"deform_conv_forward \(deformable convolution"):
        deform_conv._C.deform_conv_forward


def _tiny_coco(with_scores=False):
    from pycocotools.coco import COCO

    coco = COCO()
    annotation = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 5, 5], "area": 25, "iscrowd": 0}
    if with_scores:
        annotation["score"] = 0.9
    coco.dataset = {"images": [{"id": 1, "width": 10, "height": 10}], "categories": [{"id": 1, "name": "a"}], "annotations": [annotation]}
    coco.createIndex()
    return coco


@needs_missing_ops
def test_fast_cocoeval_names_the_op():
    from detectron2.evaluation.fast_eval_api import COCOeval_opt

    evaluator = COCOeval_opt(_tiny_coco(), _tiny_coco(with_scores=True), "bbox")
    with pytest.raises(compat.MissingCompiledOpError, match="fast C\\+\\+ COCOeval"):
        evaluator.evaluate()


def test_trainer_evaluates_coco_with_pycocotools_without_compiled_ops(tmp_path):
    import json

    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets import register_coco_instances
    from ccnet.engine import Trainer
    from ccnet.engine.cli import build_config

    name = "compat_coco_case"
    json_file = tmp_path / "gt.json"
    json_file.write_text(json.dumps(_tiny_coco().dataset))
    register_coco_instances(name, {}, str(json_file), str(tmp_path))
    try:
        (evaluator,) = Trainer.build_evaluator(build_config(), name, output_folder=str(tmp_path))._evaluators
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    assert evaluator._use_fast_impl == compat.has_compiled_ops()


# --- Pillow's Image.LINEAR -----------------------------------------------------------------


def test_pillow_removed_linear():
    result = fresh_python("from PIL import Image; print(hasattr(Image, 'LINEAR'))")
    assert result.stdout.strip() == "False"


def test_extent_transform_default_interpolation_works():
    from detectron2.data.transforms import ExtentTransform

    if "pillow_linear" in compat.applied():
        assert Image.LINEAR == Image.BILINEAR
    image = np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3)
    out = ExtentTransform(src_rect=(0, 0, 16, 16), output_size=(8, 8)).apply_image(image)
    assert out.shape == (8, 8, 3)


# --- NumPy's removed aliases in SemSegEvaluator -----------------------------------------------


def test_numpy_removed_int_and_float():
    assert not hasattr(np, "int") and not hasattr(np, "float")


def test_sem_seg_evaluator_matches_hand_counted_iou(tmp_path):
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.evaluation import SemSegEvaluator

    gt = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 255, 255], [2, 2, 2, 2]], np.uint8)
    pred = np.array([[0, 1, 1, 1], [0, 0, 1, 1], [2, 0, 2, 0], [2, 2, 2, 1]], np.int64)
    gt_file = str(tmp_path / "gt.png")
    Image.fromarray(gt).save(gt_file)
    name = "compat_semseg_case"
    DatasetCatalog.register(name, lambda: [{"file_name": "x.png", "sem_seg_file_name": gt_file}])
    MetadataCatalog.get(name).set(stuff_classes=["a", "b", "c"], ignore_label=255)
    try:
        evaluator = SemSegEvaluator(name, distributed=False)
        evaluator.reset()
        evaluator.process([{"file_name": "x.png"}], [{"sem_seg": torch.nn.functional.one_hot(torch.from_numpy(pred), 3).permute(2, 0, 1).float()}])
        result = evaluator.evaluate()["sem_seg"]
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    # Counted by hand over the 14 labelled pixels:
    # class 0: gt 4 px, pred 0 on 3 of them, pred 0 elsewhere 1 (row 3 col 1) -> IoU 3/5
    # class 1: gt 4 px all predicted 1, plus 2 false positives (row0 col1, row3 col3) -> 4/6
    # class 2: gt 6 px, 4 predicted 2, no false positive (ignored pixels do not count) -> 4/6
    expected = 100 * np.mean([3 / 5, 4 / 6, 4 / 6])
    assert result["mIoU"] == pytest.approx(expected)  # float64 ratios of counts: default rel 1e-6 is ample


# --- pkg_resources -------------------------------------------------------------------------


def test_pkg_resources_is_gone():
    assert importlib.util.find_spec("pkg_resources") is None


def test_model_zoo_configs_resolve_without_leaving_pkg_resources_behind():
    from detectron2 import model_zoo

    path = model_zoo.get_config_file("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml")
    assert os.path.isfile(path)
    assert "pkg_resources" not in sys.modules


# --- what compat leaves alone ------------------------------------------------------------------


def test_checkpoint_loading_of_fvcore_and_detectron2_is_untouched():
    # Safe loading is the project's checkpointer's (tests/engine/test_checkpoint.py), not a patch
    # of the classes every other user of the process loads with.
    from detectron2.checkpoint import DetectionCheckpointer, detection_checkpoint
    from fvcore.common.checkpoint import Checkpointer

    import ccnet.engine  # noqa: F401  (every part of the project that loads weights imported)
    import ccnet.export  # noqa: F401
    import ccnet.inference  # noqa: F401

    assert detection_checkpoint.pickle is pickle
    assert Checkpointer._load_file.__module__ == "fvcore.common.checkpoint"
    assert DetectionCheckpointer._load_file.__module__ == "detectron2.checkpoint.detection_checkpoint"


# --- MapDataset: a mapper returning None skips the sample ---------------------------------------


def test_map_dataset_replaces_a_sample_the_mapper_skips():
    from detectron2.data.common import MapDataset

    dataset = MapDataset(list(range(6)), lambda x: None if x in (2, 4) else x * 10)
    out = [dataset[i] for i in range(6)]
    assert [out[i] for i in (0, 1, 3, 5)] == [0, 10, 30, 50]
    # The skipped ones are replaced by samples the mapper accepted.
    assert {out[2], out[4]} <= {0, 10, 30, 50}


def test_train_loader_skips_samples_the_mapper_rejects():
    from detectron2.data import build_detection_train_loader

    dicts = [{"image_id": i, "width": 4, "height": 3} for i in range(4)]
    loader = build_detection_train_loader(
        dicts, mapper=lambda d: None if d["image_id"] == 1 else d, total_batch_size=2, num_workers=0
    )
    seen = [d["image_id"] for _, batch in zip(range(5), loader) for d in batch]
    assert len(seen) == 10 and set(seen) <= {0, 2, 3}


# --- hooks.LRScheduler: a torch scheduler survives --resume -------------------------------------


class _OneWeight(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, batch):
        return {"loss": (self.w - 1).pow(2).sum()}


def _trainer_with_step_lr(checkpoint_dir, lr):
    import itertools

    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.engine import SimpleTrainer, hooks

    model = _OneWeight()
    optimizer = torch.optim.SGD(model.parameters(), lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3)  # x0.1 every 3 steps
    assert not isinstance(scheduler, torch.optim.lr_scheduler._LRScheduler)
    trainer = SimpleTrainer(model, itertools.repeat(None), optimizer)
    checkpointer = DetectionCheckpointer(model, str(checkpoint_dir), optimizer=optimizer, trainer=trainer)
    trainer.register_hooks([hooks.LRScheduler(scheduler=scheduler), hooks.PeriodicCheckpointer(checkpointer, 10)])
    return trainer, checkpointer, optimizer, scheduler


def test_torch_lr_scheduler_state_is_restored_by_resume(tmp_path):
    trainer, _, optimizer, scheduler = _trainer_with_step_lr(tmp_path, lr=0.1)
    trainer.train(0, 12)
    assert scheduler.last_epoch == 12 and optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.1**4)

    trainer, checkpointer, optimizer, scheduler = _trainer_with_step_lr(tmp_path, lr=999.0)
    checkpointer.resume_or_load("", resume=True)
    assert trainer.iter == 11  # the last finished iteration, counted from 0
    assert scheduler.last_epoch == 12  # scheduler.step() calls, counted from 1
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.1**4)


# --- which fixes this Detectron2 needed ---------------------------------------------------------

# Everything Detectron2 0.6 needs with today's libraries.
V0_6_FIXES = {
    "jit_script_warning", "compiled_ops_stand_in", "pillow_linear", "model_zoo_pkg_resources",
    "numpy_aliases", "map_dataset_retry", "lr_scheduler_state",
}
# Upstream main (checked at 02b5c4e2) fixed the rest itself; it still scripts box_regression's helpers
# at import, and model_zoo still imports pkg_resources.
MAIN_FIXES = {"jit_script_warning", "model_zoo_pkg_resources"}


def _detectron2_revision() -> str:
    """'main' for upstream main since 2022 (data/common.py's _TorchSerializedList), else '0.6'."""
    from detectron2.data import common

    return "main" if hasattr(common, "_TorchSerializedList") else "0.6"


def test_applied_fixes_are_the_ones_this_detectron2_needs():
    expected = set(MAIN_FIXES if _detectron2_revision() == "main" else V0_6_FIXES)
    if compat.has_compiled_ops():
        expected.discard("compiled_ops_stand_in")
    if importlib.util.find_spec("pkg_resources") is not None:
        expected.discard("model_zoo_pkg_resources")
    print("ccnet.compat applied:", compat.applied())
    assert set(compat.applied()) == expected
