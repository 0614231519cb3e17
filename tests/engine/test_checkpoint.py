"""AtomicCheckpointer loads weight files as data only; Detectron2's own checkpointer is left as it is.

Each unsafe case is shown twice: Detectron2's ``DetectionCheckpointer`` runs the code a file asks
for (the problem is real here), the project's checkpointer refuses it before anything runs.
"""
import io
import pickle

import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer

from ccnet.engine import AtomicCheckpointer
from ccnet.engine.checkpoint import safe_load_pickle


class _RunsCode:
    """Unpickles as ``open(marker, "w")``: a file that runs code when loaded."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


class _OneLayer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(2, 2)


def test_pkl_weights_that_would_run_code_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"model": {"w": _RunsCode(str(marker))}, "__author__": "x"}))
    with pytest.raises(pickle.UnpicklingError, match=r"evil\.pkl: refusing to unpickle (builtins|io)\.open"):
        AtomicCheckpointer(_OneLayer()).load(str(path))
    assert not marker.exists()

    with pytest.raises(ValueError, match="Unsupported type"):  # only after plain pickle ran the file's code
        DetectionCheckpointer(_OneLayer()).load(str(path))
    assert marker.exists()


def test_pth_with_arbitrary_objects_is_refused_whatever_torchs_default(tmp_path, monkeypatch):
    # torch's default becomes "unpickle anything", as before torch 2.6.
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": {}, "payload": _RunsCode(str(marker))}, str(path))
    # torch's weights-only unpickler refuses it, naming the global it would have called.
    with pytest.raises(pickle.UnpicklingError, match=r"(?s)Weights only load failed.*Unsupported global: GLOBAL (builtins|io)\.open"):
        AtomicCheckpointer(_OneLayer()).load(str(path))
    assert not marker.exists()

    with pytest.warns(UserWarning, match="TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"):
        DetectionCheckpointer(_OneLayer()).load(str(path))  # fvcore leaves it to torch's default
    assert marker.exists()


def test_caffe2_pkl_weights_load_by_name_matching(tmp_path):
    # MSRA / Caffe2 naming ("fc_w"), the weights under "blobs", a momentum blob that is dropped.
    blobs = {
        "fc_w": np.arange(4, dtype=np.float32).reshape(2, 2),
        "fc_b": np.array([5.0, 6.0], np.float32),
        "fc_w_momentum": np.ones((2, 2), np.float32),
    }
    path = tmp_path / "weights.pkl"
    path.write_bytes(pickle.dumps({"blobs": blobs}, protocol=2))
    model = _OneLayer()
    AtomicCheckpointer(model).load(str(path))
    assert torch.equal(model.fc.weight, torch.from_numpy(blobs["fc_w"]))
    assert torch.equal(model.fc.bias, torch.from_numpy(blobs["fc_b"]))


def test_detectron2_model_zoo_pkl_loads_its_model_as_saved(tmp_path):
    state = {"fc.weight": np.full((2, 2), 3.0, np.float32), "fc.bias": np.zeros(2, np.float32)}
    path = tmp_path / "model_final.pkl"
    path.write_bytes(pickle.dumps({"model": state, "__author__": "Detectron2 Model Zoo"}))
    model = _OneLayer()
    AtomicCheckpointer(model).load(str(path))
    assert torch.equal(model.fc.weight, torch.full((2, 2), 3.0))


def test_pth_checkpoint_with_trainer_state_loads(tmp_path):
    model = _OneLayer()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.fc.weight.grad = torch.ones(2, 2)
    optimizer.step()
    AtomicCheckpointer(model, str(tmp_path), optimizer=optimizer).save("model_0000003", iteration=3)

    restored = _OneLayer()
    restored_optimizer = torch.optim.SGD(restored.parameters(), lr=0.1, momentum=0.9)
    extra = AtomicCheckpointer(restored, str(tmp_path), optimizer=restored_optimizer).resume_or_load("", resume=True)
    assert extra["iteration"] == 3
    assert torch.equal(restored.fc.weight, model.fc.weight)
    momentum = restored_optimizer.state_dict()["state"][0]["momentum_buffer"]
    assert torch.equal(momentum, torch.ones(2, 2))


def test_safe_load_pickle_reads_numpy_scalars_and_containers():
    data = {"a": np.float32(1.5), "b": [np.arange(3)], "c": ("x", 1)}
    loaded = safe_load_pickle(io.BytesIO(pickle.dumps(data)))
    assert loaded["a"] == np.float32(1.5) and loaded["c"] == ("x", 1)
    np.testing.assert_array_equal(loaded["b"][0], np.arange(3))


# --- the Trainer and the Predictor load through it ----------------------------------------------


def _tiny_config(tmp_path, *overrides):
    from ccnet.engine.cli import build_config
    from tests.engine import tiny_semseg

    root = str(tmp_path / "data")
    tiny_semseg.write_dataset(root, num_images=2)
    tiny_semseg.register(root)
    return build_config(tiny_semseg.CONFIG, ["OUTPUT_DIR", str(tmp_path / "out"), *overrides])


def _detectron2_defaults_names():
    from detectron2.engine import defaults

    return defaults.create_ddp_model, defaults.DetectionCheckpointer


def test_trainer_checkpoints_with_the_project_checkpointer_and_leaves_detectron2_as_it_was(tmp_path):
    from ccnet.engine import Trainer

    before = _detectron2_defaults_names()
    trainer = Trainer(_tiny_config(tmp_path))
    assert type(trainer.checkpointer) is AtomicCheckpointer
    assert _detectron2_defaults_names() == before
    assert before[1] is DetectionCheckpointer


def test_project_parts_are_removed_again_when_construction_raises():
    from ccnet.engine.defaults import project_parts

    before = _detectron2_defaults_names()
    with pytest.raises(RuntimeError, match="inside"):
        with project_parts():
            assert _detectron2_defaults_names()[1] is AtomicCheckpointer
            raise RuntimeError("inside")
    assert _detectron2_defaults_names() == before


def test_predictor_refuses_weights_that_would_run_code(tmp_path):
    from ccnet.engine import Predictor

    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"model": {"w": _RunsCode(str(marker))}, "__author__": "x"}))
    with pytest.raises(pickle.UnpicklingError, match="evil.pkl: refusing to unpickle"):
        Predictor(_tiny_config(tmp_path, "MODEL.WEIGHTS", str(path)))
    assert not marker.exists()


@pytest.mark.parametrize("under_blobs", [True, False], ids=["blobs", "top-level"])
def test_caffe2_pkl_is_read_as_name_matched_weights_without_momentum(tmp_path, under_blobs):
    blobs = {"fc_w": np.ones((2, 2), np.float32), "fc_w_momentum": np.zeros((2, 2), np.float32)}
    path = tmp_path / "weights.pkl"
    path.write_bytes(pickle.dumps({"blobs": blobs} if under_blobs else blobs, protocol=2))
    loaded = AtomicCheckpointer(_OneLayer())._load_file(str(path))
    assert set(loaded) == {"model", "__author__", "matching_heuristics"} and loaded["matching_heuristics"] is True
    assert list(loaded["model"]) == ["fc_w"]  # the momentum blob is not a weight


def test_python2_pickles_are_read_as_latin1():
    # SHORT_BINSTRING with byte 0xe9: a Python 2 str, as in Caffe2-era .pkl files' array data
    assert safe_load_pickle(io.BytesIO(b"\x80\x02U\x01\xe9.")) == "\xe9"


def test_numpy_dtype_classes_are_allowed_and_other_numpy_globals_refused():
    dtype_class = type(np.dtype("float32"))  # numpy.dtypes.Float32DType (numpy >= 1.25)
    assert safe_load_pickle(io.BytesIO(pickle.dumps(dtype_class))) is dtype_class
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to unpickle numpy\.load"):
        safe_load_pickle(io.BytesIO(pickle.dumps(np.load)))
