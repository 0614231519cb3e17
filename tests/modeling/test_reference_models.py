"""Shipped models are the ones recorded in reference_models.json (make_reference_models.py).

For each recorded model: the same parameter count, state_dict keys and shapes, and random
initialisation; a checkpoint with the recorded keys loads through DetectionCheckpointer with
no missing, unexpected or mis-shaped key; and with every weight filled from its name, the
same backbone features, context and head outputs and predictions.
"""
import json
import math

import pytest
import torch

from detectron2.checkpoint import DetectionCheckpointer
from tests.modeling.make_reference_models import (
    MODELS,
    REFERENCE_FILE,
    build,
    filled_state_dict,
    init_fingerprint,
    model_outputs,
    recorded_state_dict,
    state_dict_entries,
)

with open(REFERENCE_FILE) as f:
    REFERENCE = json.load(f)["models"]

# The same float32 operations in the same order reproduce the recorded numbers exactly. The
# margin is for a different summation order (thread count, oneDNN kernel choice): float32 sums
# reordered differ by ~1e-7 relative per operation (measured with 2 threads instead of 1: at most
# 3e-6 relative on these outputs).
RTOL = 1e-4

# Tensors whose initial values are drawn at another point of the random stream than when they
# were recorded: the video head's context module is built once, first, as the 2D head's (it
# used to be built a second time after the classifiers, replacing a first one).
REDRAWN = {
    "temporal_t5": "sem_seg_head.context.",
    "video_t5": "sem_seg_head.context.",
}


class RecordingCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer that keeps the incompatible keys of the last load."""

    def _load_model(self, checkpoint):
        self.incompatible = super()._load_model(checkpoint)
        return self.incompatible


def test_every_recorded_model_is_tested():
    assert set(REFERENCE) == set(MODELS)


@pytest.fixture(params=sorted(MODELS))
def name(request):
    return request.param


def test_model_matches_its_reference(name, tmp_path):
    reference = REFERENCE[name]
    assert (reference["config"], reference["overrides"]) == (MODELS[name][0], MODELS[name][1])
    torch.manual_seed(0)
    model = build(name)

    assert sum(p.numel() for p in model.parameters()) == reference["parameters"]
    recorded = recorded_state_dict(REFERENCE, name)
    assert state_dict_entries(model) == recorded

    init, expected_init = init_fingerprint(model), reference["init"]
    assert init["abs_sum_outside"] == pytest.approx(expected_init["abs_sum_outside"], rel=1e-9)
    redrawn = REDRAWN.get(name)
    if redrawn is None:
        assert init["abs_sum"] == pytest.approx(expected_init["abs_sum"], rel=1e-9)
    else:
        assert any(k.startswith(redrawn) for k in init["sums"])
    kept = lambda sums: {k: v for k, v in sums.items() if redrawn is None or not k.startswith(redrawn)}  # noqa: E731
    assert kept(init["sums"]) == pytest.approx(kept(expected_init["sums"]), rel=1e-9, abs=1e-9)

    path = tmp_path / "model.pth"
    torch.save({"model": filled_state_dict(recorded)}, path)
    checkpointer = RecordingCheckpointer(model)
    checkpointer.load(str(path))
    incompatible = checkpointer.incompatible
    assert (incompatible.missing_keys, incompatible.unexpected_keys, incompatible.incorrect_shapes) == ([], [], [])

    outputs = model_outputs(name, model)
    assert sorted(outputs) == sorted(reference["outputs"])
    for output_name, expected in reference["outputs"].items():
        _assert_matches(outputs[output_name], expected, f"{name}: {output_name}")


def _assert_matches(actual: torch.Tensor, expected: dict, what: str) -> None:
    assert list(actual.shape) == expected["shape"], what
    flat = actual.detach().double().flatten()
    abs_sum = expected["abs_sum"]
    scale = abs_sum / max(1, flat.numel())  # mean absolute value
    assert math.isclose(float(flat.abs().sum()), abs_sum, rel_tol=RTOL), what
    assert abs(float(flat.sum()) - expected["sum"]) <= RTOL * abs_sum, what
    values = flat[torch.tensor(expected["indices"])]
    torch.testing.assert_close(
        values, torch.tensor(expected["values"], dtype=torch.float64), rtol=RTOL, atol=RTOL * scale, msg=what
    )
