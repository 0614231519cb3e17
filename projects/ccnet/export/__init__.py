"""Deployment: TorchScript and ONNX export of every model family, checked against eager."""
from .. import compat

compat.apply()  # before Detectron2 is imported

from .adapters import FAMILIES, model_family, scripting_adapter, tracing_adapter  # noqa: E402
from .deploy import (  # noqa: E402
    FORMATS,
    METHODS,
    ONNX_OPSET,
    ExportMismatchError,
    ExportReport,
    export_verified,
    exported_file_name,
)
from .samples import sample_inputs  # noqa: E402
from .tolerances import MIN_ARGMAX_AGREEMENT, TOLERANCES, compare_outputs  # noqa: E402

__all__ = [k for k in globals().keys() if not k.startswith("_")]
