"""Export a model to TorchScript or ONNX, run the exported file, and check it against eager.

:func:`export_verified` is the one entry point (``tools/export_model.py`` is its command line):
it exports, reloads the written file, runs it on the sample and on a second input, compares
every output with the eager model, and only then moves the file to its final name. A file that
does not compute the model is never left behind: :class:`ExportMismatchError` is raised.
"""
import logging
import os
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import torch
from torch import Tensor, nn

from ..layers import UnfaithfulExportError
from .adapters import model_family, scripting_adapter, tracing_adapter
from .tolerances import Comparison, compare_outputs

__all__ = [
    "FORMATS",
    "METHODS",
    "ONNX_OPSET",
    "ExportMismatchError",
    "ExportReport",
    "export_verified",
    "exported_file_name",
]

FORMATS = ("torchscript", "onnx")
METHODS = ("tracing", "scripting")
ONNX_OPSET = 17
logger = logging.getLogger(__name__)


class ExportMismatchError(UnfaithfulExportError):
    """The exported file was written and run, and its outputs differ from the eager model's."""


@dataclass
class ExportReport:
    """What :func:`export_verified` wrote and how closely it matches eager, per check input."""

    path: str
    family: str
    format: str
    method: str
    checks: Dict[str, Comparison] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks.values())

    def table(self) -> str:
        rows = ["| input | output | max abs diff | tolerance | agreement | ok |", "|---|---|---|---|---|---|"]
        for name, comparison in self.checks.items():
            rows += [f"| {name} | {row} |" for row in comparison.rows()]
        return "\n".join(rows)


def exported_file_name(format: str) -> str:
    """Detectron2's names: ``model.ts`` (TorchScript), ``model.onnx``."""
    return {"torchscript": "model.ts", "onnx": "model.onnx"}[format]


def _named_outputs(structured, family: str) -> Dict[str, Tensor]:
    """The model's outputs, by name: instance fields (boxes in the resized image, ROI masks) or logits."""
    result = structured[0]
    if family == "instance":
        instances = result["instances"]
        return {
            "pred_boxes": instances.pred_boxes.tensor,
            "scores": instances.scores,
            "pred_classes": instances.pred_classes,
            "pred_masks": instances.pred_masks,
        }
    return {"sem_seg": result["sem_seg"]}


def _onnx_session(path: str):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _export_tracing(adapter: nn.Module, image: Tensor, path: str, format: str, family: str) -> None:
    if format == "torchscript":
        traced = torch.jit.trace(adapter, (image,), check_trace=False)
        python_ops = sorted({n.pyname() for n in traced.inlined_graph.nodes() if n.kind() == "prim::PythonOp"})
        if python_ops:
            raise UnfaithfulExportError(f"the trace holds Python ops {python_ops}, which run outside the saved graph")
        torch.jit.save(traced, path)
        return
    # One image (or one clip of the model's length): its height and width are dynamic.
    # (Detectron2's tracing-aware code keeps a traced Mask R-CNN valid at other sizes; the crop
    # check of export_verified tests it for every export.)
    spatial = {image.dim() - 2: "height", image.dim() - 1: "width"}
    torch.onnx.export(
        adapter,
        (image,),
        path,
        dynamo=False,
        opset_version=ONNX_OPSET,
        input_names=["image"],
        dynamic_axes={"image": spatial},
    )
    import onnx

    graph = onnx.load(path, load_external_data=False).graph
    custom = sorted({f"{n.domain}::{n.op_type}" for n in graph.node if n.domain not in ("", "ai.onnx")})
    if custom:
        raise UnfaithfulExportError(f"the ONNX graph holds non-standard ops {custom} (a Python or ATen fallback)")
    inputs = [i.name for i in graph.input]
    if inputs != ["image"]:
        raise UnfaithfulExportError(
            f"the ONNX graph's inputs are {inputs}, not ['image']: the exporter folded the input "
            "into a constant (an in-place write into a new tensor that it dropped), so the model "
            "would return the sample's result for every image"
        )


def _runner(path: str, format: str, method: str, adapter: Optional[nn.Module], family: str) -> Callable:
    """``run(image) -> named outputs`` of the exported file."""
    if format == "onnx":
        session = _onnx_session(path)

        def run(image):
            values = session.run(None, {"image": image.numpy()})
            return _named_outputs(adapter.outputs_schema([torch.from_numpy(v) for v in values]), family)

        return run
    loaded = torch.jit.load(path)
    if method == "scripting":
        return lambda image: loaded(({"image": image},))[0]
    return lambda image: _named_outputs(adapter.outputs_schema(loaded(image)), family)


def _eager_outputs(model: nn.Module, image: Tensor, family: str) -> Dict[str, Tensor]:
    if family == "instance":
        structured = [{"instances": model.inference([{"image": image}], do_postprocess=False)[0]}]
    else:
        structured = model([{"image": image}])
    return _named_outputs(structured, family)


def _check_inputs(sample: Tensor) -> Dict[str, Tensor]:
    """
    The sample, the sample mirrored (a different image of the same size: an exported model that
    ignores its input fails here), and the sample cropped to an odd, non-square size (every
    export has dynamic height and width: a size baked into the graph fails here).
    """
    height, width = sample.shape[-2:]
    h, w = max(1, height - 7) | 1, max(1, width - 12) | 1
    return {
        "sample": sample,
        "mirrored sample": sample.flip(-1).contiguous(),
        f"crop {h}x{w}": sample[..., :h, :w].contiguous(),
    }


@torch.no_grad()
def export_verified(
    model: nn.Module,
    inputs: List[Dict[str, Tensor]],
    output_dir: str,
    format: str = "onnx",
    method: str = "tracing",
) -> ExportReport:
    """
    Export ``model`` (eval mode) for deployment and prove the written file computes it.

    Args:
        model: a Mask R-CNN, CCNet semantic or video segmentor (see :func:`model_family`).
        inputs: ``[{"image": (3, H, W) or (T, 3, H, W) float, the model's pixel format}]``.
        output_dir: where ``model.ts`` / ``model.onnx`` is written.
        format: "torchscript" or "onnx". method: "tracing" or "scripting" (Mask R-CNN to
            TorchScript only, as in Detectron2).
    Returns:
        The report: every output's max difference and agreement on each check input.
    Raises:
        UnfaithfulExportError: the combination cannot be exported faithfully (nothing written).
        ExportMismatchError: the exported file's outputs differ beyond tolerance (file removed).
    """
    if format not in FORMATS or method not in METHODS:
        raise ValueError(f"format must be one of {FORMATS} and method one of {METHODS}, got {format!r}, {method!r}")
    if method == "scripting" and format != "torchscript":
        raise UnfaithfulExportError("scripting exports TorchScript only (as in Detectron2); use --export-method tracing for ONNX")
    model.eval()
    family = model_family(model)
    image = inputs[0]["image"]
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, exported_file_name(format))
    partial = path + ".unverified"
    adapter = None
    try:
        if method == "scripting":
            torch.jit.save(scripting_adapter(model), partial)
        else:
            adapter = tracing_adapter(model, inputs)
            _export_tracing(adapter, image, partial, format, family)
        run = _runner(partial, format, method, adapter, family)
        report = ExportReport(path, family, format, method)
        for name, check in _check_inputs(image).items():
            report.checks[name] = compare_outputs(_eager_outputs(model, check, family), run(check), family)
        if not report.ok:
            raise ExportMismatchError(
                f"the exported {format} model ({method}) does not match the eager model; nothing was "
                f"written to {path}:\n{report.table()}"
            )
    except BaseException:
        if os.path.exists(partial):
            os.remove(partial)
        raise
    os.replace(partial, path)
    return report
