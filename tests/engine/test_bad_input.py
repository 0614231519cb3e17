"""Bad input gets an error that names the problem, and nothing is lost."""
import os

import pytest
import torch

from ccnet.engine import AtomicCheckpointer, Trainer
from ccnet.engine.cli import build_config
from tests.engine import tiny_semseg


def test_config_key_typo_in_overrides_names_the_key():
    # yacs reports override typos with an AssertionError, file typos with a KeyError.
    with pytest.raises(AssertionError, match="Non-existent key: MODEL.RESNETS.DEPHT"):
        build_config(opts=["MODEL.RESNETS.DEPHT", "50"])


def test_config_key_typo_in_yaml_names_the_key(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("SOLVER:\n  BASE_LRR: 0.1\n")
    with pytest.raises(KeyError, match="SOLVER.BASE_LRR"):
        build_config(str(path))


def test_missing_builtin_dataset_folder_names_folder_and_prepare_step(tmp_path, monkeypatch):
    from detectron2.data import MetadataCatalog

    from ccnet.data import verify_dataset_files

    metadata = MetadataCatalog.get("cityscapes_fine_sem_seg_train")
    if os.path.exists(metadata.image_dir):
        pytest.skip("Cityscapes is present on this machine")
    with pytest.raises(FileNotFoundError) as error:
        verify_dataset_files("cityscapes_fine_sem_seg_train")
    message = str(error.value)
    assert metadata.image_dir in message
    assert "DETECTRON2_DATASETS" in message and "prepare_cityscapes.py" in message


def test_trainer_refuses_missing_dataset_before_building_anything(tmp_path):
    tiny_semseg.register(str(tmp_path / "nowhere"))
    cfg = build_config(tiny_semseg.CONFIG, ["OUTPUT_DIR", str(tmp_path / "out")])
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nowhere" / "images" / "train")):
        Trainer(cfg)


def test_unregistered_dataset_lists_the_registered_ones():
    from ccnet.data import verify_dataset_files

    with pytest.raises(KeyError, match="not registered.*coco_2017_train"):
        verify_dataset_files("coco_2071_train")


def test_interrupted_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model = torch.nn.Linear(3, 2)
    checkpointer = AtomicCheckpointer(model, save_dir=str(tmp_path))
    checkpointer.save("model_0000009")
    before = (tmp_path / "model_0000009.pth").read_bytes()

    def crash_mid_write(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash_mid_write)
    for name in ("model_0000009", "model_0000019"):  # overwrite in place, and a new file
        with pytest.raises(KeyboardInterrupt):
            checkpointer.save(name)
    assert (tmp_path / "model_0000009.pth").read_bytes() == before
    assert not (tmp_path / "model_0000019.pth").exists()
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000009.pth"
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000009.pth"]
    monkeypatch.undo()
    assert checkpointer.resume_or_load("", resume=True) is not None


def test_nan_loss_stops_training_with_the_iteration_and_keeps_checkpoints(tmp_path):
    root = tmp_path / "data"
    tiny_semseg.write_dataset(str(root), num_images=4)
    tiny_semseg.register(str(root))
    out = tmp_path / "out"
    cfg = build_config(tiny_semseg.CONFIG, ["OUTPUT_DIR", str(out), "SOLVER.CHECKPOINT_PERIOD", "3", "SOLVER.MAX_ITER", "10"])
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    model = trainer.model
    original_forward = model.forward

    def forward_with_nan_after_iteration_4(batched_inputs):
        losses = original_forward(batched_inputs)
        if trainer.iter >= 4:
            losses = {k: v * float("nan") for k, v in losses.items()}
        return losses

    model.forward = forward_with_nan_after_iteration_4
    with pytest.raises(FloatingPointError, match="Loss became infinite or NaN at iteration=4"):
        trainer.train()
    saved = torch.load(out / "model_0000002.pth", weights_only=True)
    assert saved["iteration"] == 2 and (out / "last_checkpoint").read_text() == "model_0000002.pth"
    assert all(torch.isfinite(v).all() for v in saved["model"].values() if v.is_floating_point())


@pytest.mark.parametrize("evaluator_type", ["sem_seg", "cityscapes_sem_seg"])
def test_semantic_datasets_are_evaluated_with_sem_seg_evaluator(evaluator_type):
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.evaluation import SemSegEvaluator

    name = f"evaluator_case_{evaluator_type}"
    DatasetCatalog.register(name, lambda: [{"file_name": "a.png", "sem_seg_file_name": "a_gt.png"}])
    MetadataCatalog.get(name).set(evaluator_type=evaluator_type, stuff_classes=["a"], ignore_label=255)
    try:
        (evaluator,) = Trainer.build_evaluator(build_config(), name, output_folder=None)._evaluators
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    assert type(evaluator) is SemSegEvaluator


def test_unknown_evaluator_type_is_named():
    from detectron2.data import DatasetCatalog, MetadataCatalog

    name = "evaluator_case_unknown"
    DatasetCatalog.register(name, lambda: [])
    MetadataCatalog.get(name).set(evaluator_type="lvis")
    try:
        with pytest.raises(NotImplementedError, match="evaluator_type='lvis'"):
            Trainer.build_evaluator(build_config(), name, output_folder=None)
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
