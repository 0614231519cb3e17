"""Every model family exports to TorchScript and ONNX and computes what the eager model does.

``export_verified`` checks its own files; these tests also run the written files themselves
(onnxruntime, ``torch.jit.load``) against eager, and show that unfaithful exports raise.
"""
import os

import numpy as np
import onnxruntime
import pytest
import torch
from torch.nn import functional as F

import ccnet.layers.criss_cross as criss_cross_module
from ccnet.engine.cli import build_config
from ccnet.export import ExportMismatchError, export_verified, sample_inputs, tracing_adapter
from ccnet.layers import UnfaithfulExportError
from ccnet.modeling.meta_arch import CCNetVideoSegmentor
from detectron2.modeling import build_model
from detectron2.structures import ImageList
from tests.conftest import REPO_ROOT
from tests.test_semantic_configs import TINY_MODEL_OVERRIDES

QUICKSTART = "configs/Quickstart/mask_rcnn_rcca_shapes.yaml"
INSTANCE = {
    "rcca": [],
    "nl": ["MODEL.CONTEXT.NAME", "NL"],
    # a 64-channel FPN, so that the block's 32 inner channels suit GN's 32 groups
    "rcca_fpn": [
        "MODEL.RESNETS.CONTEXT_STAGES", "()", "MODEL.FPN.CONTEXT_IN_FEATURES", "('res5',)",
        "MODEL.FPN.OUT_CHANNELS", "64", "MODEL.CONTEXT.REDUCTION", "2",
    ],
    # Detectron2's own backbone builder, which needs the res2 width of the ImageNet R-18
    "baseline": ["MODEL.BACKBONE.NAME", "build_resnet_fpn_backbone", "MODEL.RESNETS.RES2_OUT_CHANNELS", "64"],
}
SEMANTIC = {
    "rcca_r1": "configs/Cityscapes-SemanticSegmentation/rcca_r1_R_101_OS8_60k.yaml",
    "rcca_r2": "configs/Cityscapes-SemanticSegmentation/rcca_r2_R_101_OS8_60k.yaml",
    "nl": "configs/Cityscapes-SemanticSegmentation/nl_R_101_OS8_60k.yaml",
    "fcn": "configs/Cityscapes-SemanticSegmentation/fcn_R_101_OS8_60k.yaml",
}
VIDEO_T5 = "configs/Synthetic-Temporal/ccnet_t5.yaml"
WHOLE_IMAGE = ["TEST.SLIDING_WINDOW.ENABLED", "False"]


def _model(config, overrides=()):
    cfg = build_config(os.path.join(REPO_ROOT, config), list(overrides))
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():  # open the attention (gamma starts at 0: the identity)
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.fill_(0.5)
    return cfg, model


def _instance(variant):
    return _model(QUICKSTART, INSTANCE[variant])


def _semantic(variant, size=(37, 45)):
    cfg, model = _model(SEMANTIC[variant], TINY_MODEL_OVERRIDES + WHOLE_IMAGE)
    return model, sample_inputs(cfg, size=size)


def _video(size=(24, 28)):
    cfg, model = _model(VIDEO_T5)
    return model, sample_inputs(cfg, size=size)


def _onnx_run(path, image):
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {"image": image.numpy()})


@pytest.mark.parametrize("variant", ["rcca", "nl", "rcca_fpn", "baseline"])
def test_mask_rcnn_onnx_matches_eager_in_onnxruntime(tmp_path, variant):
    cfg, model = _instance(variant)
    inputs = sample_inputs(cfg)
    report = export_verified(model, inputs, str(tmp_path), "onnx", "tracing")
    assert report.ok and os.path.isfile(report.path)
    # Independently of the report: Detectron2's own flattening of the eager outputs against
    # onnxruntime's outputs, in order (boxes in pixels, scores, classes, 28x28 mask probabilities).
    image = inputs[0]["image"]
    with torch.no_grad():
        eager = tracing_adapter(model, inputs)(image)
    exported = _onnx_run(report.path, image)
    assert len(exported) == len(eager) and eager[0].shape[0] > 0
    for actual, expected in zip(exported, eager):
        np.testing.assert_allclose(actual, expected.numpy(), rtol=0, atol=1e-3)  # boxes: 1e-3 px
    # At another size than the export's (dynamic height and width).
    crop = image[:, :101, :93].contiguous()
    with torch.no_grad():
        eager = tracing_adapter(model, [{"image": crop}])(crop)
    for actual, expected in zip(_onnx_run(report.path, crop), eager):
        np.testing.assert_allclose(actual, expected.numpy(), rtol=0, atol=1e-3)


@pytest.mark.parametrize("variant,method", [("rcca", "tracing"), ("rcca", "scripting"), ("nl", "tracing")])
def test_mask_rcnn_torchscript_after_save_and_load(tmp_path, variant, method):
    cfg, model = _instance(variant)
    inputs = sample_inputs(cfg)
    report = export_verified(model, inputs, str(tmp_path), "torchscript", method)
    assert report.ok and report.path.endswith("model.ts")
    loaded = torch.jit.load(report.path)
    image = inputs[0]["image"]
    with torch.no_grad():
        expected = model.inference([{"image": image}], do_postprocess=False)[0]
        if method == "scripting":
            boxes = loaded(({"image": image},))[0]["pred_boxes"]
        else:
            adapter = tracing_adapter(model, inputs)
            adapter(image)  # (its outputs_schema is known once it has run)
            boxes = adapter.outputs_schema(loaded(image))[0]["instances"].pred_boxes.tensor
    torch.testing.assert_close(boxes, expected.pred_boxes.tensor, rtol=0, atol=1e-3)
    assert set(report.checks) == {"sample", "mirrored sample", "crop 121x117"}


@pytest.mark.parametrize("variant", sorted(SEMANTIC))
@pytest.mark.parametrize("format", ["onnx", "torchscript"])
def test_semantic_model_exports_with_dynamic_sizes(tmp_path, variant, format):
    model, inputs = _semantic(variant)
    report = export_verified(model, inputs, str(tmp_path), format, "tracing")
    assert report.ok and set(report.checks) == {"sample", "mirrored sample", "crop 31x33"}
    # Another size than the export's, odd and non-square, run from the file itself.
    image = inputs[0]["image"][:, :29, :41].contiguous()
    with torch.no_grad():
        expected = model([{"image": image}])[0]["sem_seg"]
    if format == "onnx":
        (actual,) = _onnx_run(report.path, image)
    else:
        (actual,) = torch.jit.load(report.path)(image)
    assert tuple(actual.shape) == (19, 29, 41)  # Cityscapes classes
    torch.testing.assert_close(torch.as_tensor(actual), expected, rtol=0, atol=1e-4 * max(1.0, float(expected.abs().max())))


@pytest.mark.parametrize("format", ["onnx", "torchscript"])
def test_video_model_exports_a_clip_to_its_middle_frame_logits(tmp_path, format):
    model, inputs = _video()
    report = export_verified(model, inputs, str(tmp_path), format, "tracing")
    assert report.ok and report.family == "video"
    clip = inputs[0]["image"][:, :, :21, :27].contiguous()
    with torch.no_grad():
        expected = model([{"image": clip}])[0]["sem_seg"]
    if format == "onnx":
        (actual,) = _onnx_run(report.path, clip)
    else:
        (actual,) = torch.jit.load(report.path)(clip)
    torch.testing.assert_close(torch.as_tensor(actual), expected, rtol=0, atol=1e-4 * max(1.0, float(expected.abs().max())))


def test_sliding_window_inference_refuses_to_export(tmp_path):
    cfg, model = _model(SEMANTIC["rcca_r2"], TINY_MODEL_OVERRIDES)
    assert model.sliding_window
    with pytest.raises(UnfaithfulExportError, match="TEST.SLIDING_WINDOW.ENABLED False"):
        export_verified(model, sample_inputs(cfg, size=(37, 45)), str(tmp_path), "onnx")
    assert os.listdir(tmp_path) == []


def test_onnx_with_scripting_is_refused(tmp_path):
    cfg, model = _instance("rcca")
    with pytest.raises(UnfaithfulExportError, match="TorchScript only"):
        export_verified(model, sample_inputs(cfg), str(tmp_path), "onnx", "scripting")


def test_an_export_that_computes_something_else_raises_and_writes_nothing(tmp_path, monkeypatch):
    # Plant a wrong portable formulation (the attention's values, unweighted): eager is unchanged.
    monkeypatch.setattr(criss_cross_module, "criss_cross_portable", lambda query, key, value: value)
    model, inputs = _semantic("rcca_r2")
    with pytest.raises(ExportMismatchError, match="sem_seg"):
        export_verified(model, inputs, str(tmp_path), "onnx")
    assert os.listdir(tmp_path) == []


def test_an_input_folded_into_a_constant_is_detected(tmp_path, monkeypatch):
    # Padding by copying the frames into a new tensor in place (as Detectron2 0.6's ImageList
    # does for several images): the TorchScript ONNX exporter drops such copies, and the exported
    # model ignored its input. Written out here so that the plant does not depend on the
    # installed Detectron2's ImageList.
    def in_place_padding(self, image):
        height, width = image.shape[-2], image.shape[-1]
        padded = image.new_zeros(ImageList.from_tensors([image], self.backbone.size_divisibility).tensor[0].shape)
        for frame, target in zip(image, padded):
            target[..., :height, :width].copy_(frame)
        logits, _ = self.sem_seg_head(self.backbone(padded), clip_length=image.shape[0])
        return logits[..., :height, :width]

    monkeypatch.setattr(CCNetVideoSegmentor, "predict_whole_image", in_place_padding)
    model, inputs = _video()
    # Caught either way: the input is gone from the graph, or the outputs differ.
    with pytest.raises(UnfaithfulExportError, match="constant|does not match"):
        export_verified(model, inputs, str(tmp_path), "onnx")
    assert os.listdir(tmp_path) == []
