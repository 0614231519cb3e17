"""Deployment: TorchScript and ONNX export of every model family, checked against eager."""
from .adapters import FAMILIES, model_family, scripting_adapter, tracing_adapter
from .deploy import (
    FORMATS,
    METHODS,
    ONNX_OPSET,
    ExportMismatchError,
    ExportReport,
    export_verified,
    exported_file_name,
)
from .samples import sample_inputs
from .tolerances import MIN_ARGMAX_AGREEMENT, TOLERANCES, compare_outputs

__all__ = [k for k in globals().keys() if not k.startswith("_")]
