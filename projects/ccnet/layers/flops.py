"""fvcore FLOP counting for the custom criss-cross op (fvcore convention: 1 per multiply-add).

fvcore is imported when :class:`FlopCountAnalysis` is first used (``ccnet.layers`` itself
needs PyTorch only).
"""
import functools
import math
from typing import Any, Dict, List, Optional

from .criss_cross import CrissCrossAttentionFunction, counted_as_one_op

__all__ = ["FlopCountAnalysis", "criss_cross_flops", "flop_count_handles"]


def criss_cross_flops(query_shape, value_channels: int) -> int:
    """
    Multiply-adds of criss-cross attention for a query of shape (N, Cq, *S) and C value
    channels: every position takes (sum(S) - len(S) + 1) query-key dot products of length Cq and
    as many weighted sums of C-vectors. Softmax and masking are not counted (as fvcore does not
    count elementwise ops). The paper's convention counts 2 FLOPs per multiply-add.
    """
    n, qk_channels, *spatial = query_shape
    reach = sum(spatial) - len(spatial) + 1
    return n * math.prod(spatial) * reach * (qk_channels + value_channels)


def _shape(value) -> Optional[List[int]]:
    """The shape of a value of a traced graph (None if unknown), as fvcore's ``get_shape``."""
    return value.type().sizes() if value.isCompleteTensor() else None


def _criss_cross_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    query_shape, value_shape = _shape(inputs[0]), _shape(inputs[2])
    return criss_cross_flops(query_shape, value_shape[1])


def flop_count_handles() -> Dict[str, Any]:
    """
    Op handles that make fvcore count the custom op when it is traced as one node (see
    :class:`FlopCountAnalysis`, which sets them).
    """
    return {"prim::PythonOp." + CrissCrossAttentionFunction.__name__: _criss_cross_flop_jit}


@functools.lru_cache(maxsize=None)
def _flop_count_analysis_class() -> type:
    import fvcore.nn

    class FlopCountAnalysis(fvcore.nn.FlopCountAnalysis):
        """
        fvcore's FLOP counter (1 per multiply-add), with criss-cross attention counted by
        :func:`criss_cross_flops`: a JIT trace would otherwise record the portable formulation,
        whose ``einsum`` shapes cover whole rows and columns. Same API as fvcore's class.
        """

        def __init__(self, model, inputs):
            super().__init__(model, inputs)
            self.set_op_handle(**flop_count_handles())

        def _analyze(self):
            with counted_as_one_op():
                return super()._analyze()

    FlopCountAnalysis.__module__, FlopCountAnalysis.__qualname__ = __name__, "FlopCountAnalysis"
    return FlopCountAnalysis


def __getattr__(name: str):
    # FlopCountAnalysis subclasses fvcore's class: built (and fvcore imported) on first access.
    if name == "FlopCountAnalysis":
        return _flop_count_analysis_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
