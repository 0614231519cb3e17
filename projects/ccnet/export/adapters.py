"""What of a model is exported: one traceable (or scriptable) module per model family.

Detectron2 models take and return lists of dicts; exporters take and return tensors.
:func:`tracing_adapter` wraps a model in Detectron2's :class:`TracingAdapter`, which flattens
both, with the inference function of the model's family:

* ``instance`` (:class:`GeneralizedRCNN`: RCCA / NL Mask R-CNN): ``inference(...,
  do_postprocess=False)``, as Detectron2's ``tools/deploy/export_model.py``: boxes in the
  resized image, 28x28 ROI masks;
* ``semantic`` (:class:`CCNetSemanticSegmentor`, whole-image mode): ``(K, H, W)`` logits;
* ``video`` (:class:`CCNetVideoSegmentor`): a clip ``(T, 3, H, W)`` -> the middle frame's
  ``(K, H, W)`` logits.
"""
from typing import Dict, List, Tuple

import torch
from torch import Tensor, nn

from detectron2.modeling import GeneralizedRCNN
from detectron2.structures import Boxes

from ..compat import import_detectron2_export
from ..layers import UnfaithfulExportError
from ..modeling.meta_arch import CCNetSemanticSegmentor, CCNetVideoSegmentor

__all__ = ["FAMILIES", "model_family", "tracing_adapter", "scripting_adapter"]

FAMILIES = ("instance", "semantic", "video")

# Instances fields of a Mask R-CNN, for TorchScript scripting (as Detectron2's export tool).
_INSTANCE_FIELDS = {
    "proposal_boxes": Boxes,
    "objectness_logits": Tensor,
    "pred_boxes": Boxes,
    "scores": Tensor,
    "pred_classes": Tensor,
    "pred_masks": Tensor,
}


def model_family(model: nn.Module) -> str:
    """One of :data:`FAMILIES`; raises for a model this project cannot export faithfully."""
    if isinstance(model, GeneralizedRCNN):
        return "instance"
    if isinstance(model, CCNetSemanticSegmentor):
        modes = {
            "sliding-window inference (off: TEST.SLIDING_WINDOW.ENABLED False)": model.sliding_window,
            "multi-scale test-time augmentation (off: TEST.AUG.ENABLED False)": model.test_short_edge_sizes,
            "flip test-time augmentation (off: TEST.AUG.ENABLED False)": model.test_flip,
        }
        enabled = [name for name, on in modes.items() if on]
        if enabled:
            raise UnfaithfulExportError(
                f"{type(model).__name__} is configured for {', '.join(enabled)}: its loops over "
                "windows and scales depend on the image size, which a trace would fix to the "
                "sample's. Export whole-image inference instead."
            )
        return "video" if isinstance(model, CCNetVideoSegmentor) else "semantic"
    raise UnfaithfulExportError(
        f"no export adapter for {type(model).__name__}: export supports GeneralizedRCNN "
        "(Mask R-CNN), CCNetSemanticSegmentor and CCNetVideoSegmentor"
    )


def _instance_inference(model, inputs):
    instances = model.inference(inputs, do_postprocess=False)[0]
    return [{"instances": instances}]


def tracing_adapter(model: nn.Module, inputs: List[Dict[str, Tensor]]) -> nn.Module:
    """
    A module ``f(image) -> tuple of tensors`` for ``torch.jit.trace`` / ``torch.onnx.export``.

    Args:
        model: an eval-mode model of one of the :data:`FAMILIES`.
        inputs: one sample, ``[{"image": (3, H, W) or clip (T, 3, H, W)}]``, as the model takes.
    Returns:
        Detectron2's TracingAdapter (``.outputs_schema`` rebuilds the structured outputs), in
        eval mode.
    """
    family = model_family(model)
    inputs = [{"image": inputs[0]["image"]}]  # height/width would be traced as constants
    inference = _instance_inference if family == "instance" else None
    return import_detectron2_export().TracingAdapter(model, inputs, inference).eval()


class _ScriptableInstanceAdapter(nn.Module):
    """Detectron2's scripting adapter: returns the Instances' fields as dicts (see its export tool)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.eval()

    def forward(self, inputs: Tuple[Dict[str, Tensor]]) -> List[Dict[str, Tensor]]:
        instances = self.model.inference(inputs, do_postprocess=False)
        return [i.get_fields() for i in instances]


def scripting_adapter(model: nn.Module) -> torch.jit.ScriptModule:
    """
    The model scripted with Detectron2's ``scripting_with_instances`` (Mask R-CNN only, as in
    Detectron2): ``f(({"image": (3, H, W)},)) -> [{"pred_boxes", "scores", "pred_classes",
    "pred_masks"}]``. Other families raise: their inference is Python that TorchScript cannot
    compile; use tracing.
    """
    family = model_family(model)
    if family != "instance":
        raise UnfaithfulExportError(
            f"scripting exports Mask R-CNN models only (as Detectron2's export tool); a {family} "
            "model exports with --export-method tracing"
        )
    return import_detectron2_export().scripting_with_instances(_ScriptableInstanceAdapter(model), _INSTANCE_FIELDS)
