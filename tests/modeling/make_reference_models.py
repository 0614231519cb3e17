"""Record fingerprints of shipped models: ``tests/modeling/reference_models.json``.

Generated at commit d33ddc3 with

    PYTHONPATH=projects python tests/modeling/make_reference_models.py

For one or a few shipped configs per model family (instance, semantic, video, the synthetic
benchmarks and the LazyConfig twins) it builds the model on CPU and records

* the parameter count and the sorted (state_dict key, shape) list: checkpoints keep loading;
* ``init``: sums of the freshly built parameters after ``torch.manual_seed(0)`` (the whole model,
  and each context / head tensor): the random initialisation, its order included, is unchanged;
* ``outputs``: with every parameter and buffer filled from its name (:func:`name_seeded_fill`),
  in eval mode, on fixed small inputs: backbone features, context and head outputs and the
  model's predictions, each as a few robust statistics (:func:`summarize`).

``test_reference_models.py`` rebuilds the models with the code of the day and compares. Rerun
this script only when a change of these numbers is intended.
"""
import json
import os
import zlib
from typing import Callable, Dict, List, Tuple

import torch

from ccnet.engine.cli import build_config
from ccnet.engine.lazy import load_config
from detectron2.config import instantiate
from detectron2.modeling import build_model
from detectron2.structures import Boxes

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REFERENCE_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference_models.json")
NUM_VALUES = 16  # values recorded per tensor, at evenly spaced flat indices

CPU = ["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu"]
# The video model with sliding windows smaller than the clip and multi-scale + flip test-time
# augmentation: every inference mode of CCNetSemanticSegmentor on clips (whole-image inference
# is predict_whole_image).
VIDEO_MODES = [
    "TEST.SLIDING_WINDOW.ENABLED", "True", "TEST.SLIDING_WINDOW.SIZE", "(32, 40)",
    "TEST.AUG.ENABLED", "True", "TEST.AUG.MIN_SIZES", "(40,)", "TEST.AUG.MAX_SIZE", "100", "TEST.AUG.FLIP", "True",
]  # fmt: skip

# name -> (config file relative to the repository, overrides, kind of input)
MODELS: Dict[str, Tuple[str, List[str], str]] = {
    "instance_rcca": ("configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x_rcca.yaml", CPU, "instance"),
    "instance_rcca_fpn": ("configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x_rcca_fpn.yaml", CPU, "instance"),
    "instance_nl": ("configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x_nl.yaml", CPU, "instance"),
    "semantic_rcca_r2_ccl": ("configs/Cityscapes-SemanticSegmentation/rcca_r2_ccl_R_101_OS8_60k.yaml", CPU, "semantic"),
    "semantic_nl": ("configs/Cityscapes-SemanticSegmentation/nl_R_101_OS8_60k.yaml", CPU, "semantic"),
    "semantic_fcn": ("configs/Cityscapes-SemanticSegmentation/fcn_R_101_OS8_60k.yaml", CPU, "semantic"),
    "video_t5": ("configs/CamVid-VideoSegmentation/rcca3d_t5_R_101_OS8_10k.yaml", CPU + VIDEO_MODES, "video"),
    "long_range_rcca_r2": ("configs/Synthetic-LongRange/rcca_r2.yaml", [], "semantic_small"),
    "temporal_t5": ("configs/Synthetic-Temporal/ccnet_t5.yaml", [], "video_small"),
    "lazy_instance_rcca_fpn": ("configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x_rcca_fpn.py", [], "instance"),
    "lazy_semantic_rcca_r2": ("configs/Cityscapes-SemanticSegmentation/rcca_r2_R_101_OS8_60k.py", [], "semantic"),
}


def build(name: str) -> torch.nn.Module:
    """The model of ``MODELS[name]``, freshly initialised (call ``torch.manual_seed`` first)."""
    config, overrides, _ = MODELS[name]
    path = os.path.join(REPO_ROOT, config)
    if path.endswith(".py"):
        return instantiate(load_config(path, overrides).model)
    return build_model(build_config(path, overrides))


def name_seeded_fill(name: str, shape, dtype: torch.dtype) -> torch.Tensor:
    """Deterministic values for the state_dict entry ``name``, from a generator seeded by its name.

    Convolution / linear weights: normal with std 1/sqrt(fan in) (activations keep their scale
    through deep networks); norm weights and attention scales ``gamma``: in [0.5, 1) and [0.5, 1.5);
    running variances in [0.5, 1.5) (positive); biases and running means in [-0.1, 0.1);
    integer buffers (``num_batches_tracked``): 0.
    """
    if not dtype.is_floating_point:
        return torch.zeros(shape, dtype=dtype)
    generator = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    leaf = name.rsplit(".", 1)[-1]
    if len(shape) >= 2:
        fan_in = max(1, torch.Size(shape).numel() // shape[0])
        values = torch.randn(shape, generator=generator) / fan_in**0.5
    elif leaf == "running_var" or leaf == "gamma":
        values = 0.5 + torch.rand(shape, generator=generator)
    elif leaf == "weight":  # the weight of a norm (1-D)
        values = 0.5 + 0.5 * torch.rand(shape, generator=generator)
    else:  # biases, running means
        values = 0.2 * (torch.rand(shape, generator=generator) - 0.5)
    return values.to(dtype)


# Models whose state_dict is recorded as its difference from that of another model (smaller file).
STATE_DICT_LIKE = {
    "instance_rcca_fpn": "instance_rcca",
    "instance_nl": "instance_rcca",
    "lazy_instance_rcca_fpn": "instance_rcca",
    "semantic_nl": "semantic_rcca_r2_ccl",
    "semantic_fcn": "semantic_rcca_r2_ccl",
    "video_t5": "semantic_rcca_r2_ccl",
    "lazy_semantic_rcca_r2": "semantic_rcca_r2_ccl",
}


def dtype_of(key: str) -> torch.dtype:
    """The dtype of a state_dict entry of these models: int64 counters, float32 otherwise."""
    return torch.int64 if key.endswith("num_batches_tracked") else torch.float32


def state_dict_entries(model: torch.nn.Module) -> List[Tuple[str, List[int]]]:
    """Sorted (key, shape) of the model's state_dict (dtypes follow :func:`dtype_of`)."""
    state = model.state_dict()
    wrong = [k for k, v in state.items() if v.dtype != dtype_of(k)]
    if wrong:
        raise TypeError(f"state_dict entries whose dtype is not that of dtype_of(): {wrong}")
    return sorted((k, list(v.shape)) for k, v in state.items())


def encode_state_dict(entries, base_entries) -> Dict[str, list]:
    """(key, shape) ``entries`` as their difference from ``base_entries``: {"without": keys of the
    base to drop, "with": [key, shape] to add} (a key whose shape differs is in both)."""
    this, base = {k: list(s) for k, s in entries}, {k: list(s) for k, s in base_entries}
    return {
        "without": sorted(k for k in base if this.get(k) != base[k]),
        "with": sorted([k, s] for k, s in this.items() if base.get(k) != s),
    }


def recorded_state_dict(models: Dict[str, dict], name: str) -> List[Tuple[str, List[int]]]:
    """The sorted (key, shape) list recorded for ``name`` (decoding :func:`encode_state_dict`)."""
    record = models[name]["state_dict"]
    if isinstance(record, list):
        return [(k, list(shape)) for k, shape in record]
    base = {k: shape for k, shape in recorded_state_dict(models, record["like"])}
    for key in record["without"]:
        del base[key]
    base.update({k: list(shape) for k, shape in record["with"]})
    return sorted(base.items())


def filled_state_dict(entries: List[Tuple[str, List[int]]]) -> Dict[str, torch.Tensor]:
    """{key: :func:`name_seeded_fill` tensor} for recorded (key, shape) entries."""
    return {key: name_seeded_fill(key, tuple(shape), dtype_of(key)) for key, shape in entries}


def _is_new_module_key(key: str) -> bool:
    """Tensors of the project's context modules and heads (whose initialisation is recorded)."""
    return "context" in key or key.startswith("sem_seg_head.")


def init_fingerprint(model: torch.nn.Module) -> Dict[str, object]:
    """Sums (float64) of the fresh parameters and buffers: ``sums`` of each context / head tensor,
    ``abs_sum`` of the absolute values of all tensors, ``abs_sum_outside`` of all the others."""
    state = {k: v for k, v in model.state_dict().items() if v.dtype.is_floating_point}
    abs_sums = {k: float(v.abs().sum(dtype=torch.float64)) for k, v in state.items()}
    return {
        "abs_sum": sum(abs_sums.values()),
        "abs_sum_outside": sum(s for k, s in abs_sums.items() if not _is_new_module_key(k)),
        "sums": {k: float(v.sum(dtype=torch.float64)) for k, v in sorted(state.items()) if _is_new_module_key(k)},
    }


def summarize(x: torch.Tensor) -> Dict[str, object]:
    """Shape, sum, sum of absolute values and NUM_VALUES values at evenly spaced flat indices."""
    flat = x.detach().double().flatten()
    indices = torch.linspace(0, flat.numel() - 1, NUM_VALUES).round().long().unique()
    return {
        "shape": list(x.shape),
        "sum": float(flat.sum()),
        "abs_sum": float(flat.abs().sum()),
        "indices": indices.tolist(),
        "values": flat[indices].tolist(),
    }


def _image(channels_first_shape, seed: int = 0) -> torch.Tensor:
    """A fixed image (or clip) of uint8 values, as float."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, channels_first_shape, generator=generator, dtype=torch.uint8).float()


def _normalized(model, image: torch.Tensor) -> torch.Tensor:
    return (image - model.pixel_mean) / model.pixel_std


def _instance_outputs(model) -> Dict[str, torch.Tensor]:
    images = model.preprocess_image([{"image": _image((3, 64, 96))}])
    features = model.backbone(images.tensor)
    outputs = {f"backbone.{k}": v for k, v in features.items()}
    rpn = model.proposal_generator
    objectness, deltas = rpn.rpn_head([features[f] for f in rpn.in_features])
    for level, (o, d) in enumerate(zip(objectness, deltas)):
        outputs[f"rpn.objectness.{level}"], outputs[f"rpn.deltas.{level}"] = o, d
    heads = model.roi_heads
    boxes = [Boxes(torch.tensor([[4.0, 4.0, 40.0, 30.0], [10.0, 20.0, 90.0, 60.0], [0.0, 0.0, 96.0, 64.0]]))]
    box_features = heads.box_head(heads.box_pooler([features[f] for f in heads.box_in_features], boxes))
    outputs["box.scores"], outputs["box.deltas"] = heads.box_predictor(box_features)
    mask_features = heads.mask_pooler([features[f] for f in heads.mask_in_features], boxes)
    outputs["mask.logits"] = heads.mask_head.layers(mask_features)
    return outputs


def _semantic_outputs(model, size) -> Dict[str, torch.Tensor]:
    image = _image((3, *size))
    features = model.backbone(_normalized(model, image)[None])
    outputs = {f"backbone.{k}": v for k, v in features.items()}
    head = model.sem_seg_head
    outputs["head.context"] = head.context(features[head.in_feature])
    outputs["head.logits"] = head(features)[0]
    outputs["model.sem_seg"] = model([{"image": image}])[0]["sem_seg"]
    return outputs


def _video_outputs(model, size, clip_length: int = 5) -> Dict[str, torch.Tensor]:
    clip = _image((clip_length, 3, *size))
    frames = _normalized(model, clip)
    features = model.backbone(frames)
    outputs = {f"backbone.{k}": v for k, v in features.items()}
    outputs["predict_whole_image"] = model.predict_whole_image(frames)
    outputs["model.sem_seg"] = model([{"image": clip}])[0]["sem_seg"]
    return outputs


OUTPUTS: Dict[str, Callable[[torch.nn.Module], Dict[str, torch.Tensor]]] = {
    "instance": _instance_outputs,
    "semantic": lambda model: _semantic_outputs(model, (48, 64)),
    "semantic_small": lambda model: _semantic_outputs(model, (64, 64)),
    "video": lambda model: _video_outputs(model, (48, 64)),
    "video_small": lambda model: _video_outputs(model, (32, 32)),
}


def model_outputs(name: str, model: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """The recorded outputs of a (filled) model, in eval mode, without gradients."""
    model.eval()
    with torch.no_grad():
        return OUTPUTS[MODELS[name][2]](model)


def reference(name: str) -> Dict[str, object]:
    config, overrides, _ = MODELS[name]
    torch.manual_seed(0)
    model = build(name)
    return {
        "config": config,
        "overrides": overrides,
        "parameters": sum(p.numel() for p in model.parameters()),
        "state_dict": state_dict_entries(model),
        "init": init_fingerprint(model),
        "outputs": {k: summarize(v) for k, v in model_outputs(name, filled(model)).items()},
    }


def filled(model: torch.nn.Module) -> torch.nn.Module:
    """The model with every state_dict entry set to its :func:`name_seeded_fill` values."""
    model.load_state_dict(filled_state_dict(state_dict_entries(model)))
    return model


def main():
    torch.set_num_threads(1)
    models = {}
    for name in MODELS:
        print("recording", name, flush=True)
        models[name] = reference(name)
    for name, base in STATE_DICT_LIKE.items():
        entries = models[name]["state_dict"]
        models[name]["state_dict"] = dict(like=base, **encode_state_dict(entries, models[base]["state_dict"]))
        assert recorded_state_dict(models, name) == entries, name
    with open(REFERENCE_FILE, "w") as f:
        json.dump({"commit": "d33ddc3", "models": models}, f, separators=(",", ":"))
    print(f"wrote {REFERENCE_FILE} ({os.path.getsize(REFERENCE_FILE) // 1024} KB)")


if __name__ == "__main__":
    main()
