"""How close an exported model must be to the eager one, output by output.

An exported float32 model runs the same arithmetic in another order (other kernels, fused ops),
so its outputs differ from eager by a few float32 roundings per layer: measured on this
project's models, at most ~2e-5 on boxes of 128-px images and ~2e-6 on logits of scale ~1
(docs/export.md). The tolerances are about 10-50x that, and far below what a wrong export
gives (a constant in place of the attention changed outputs by 0.1-7).
"""
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import torch
from torch import Tensor

__all__ = ["TOLERANCES", "MIN_ARGMAX_AGREEMENT", "Comparison", "compare_outputs"]

# output name -> (absolute, relative to the largest eager magnitude of that output)
TOLERANCES: Dict[str, Tuple[float, float]] = {
    "pred_boxes": (1e-3, 1e-5),  # pixels
    "scores": (1e-4, 0.0),  # probabilities
    "pred_masks": (1e-4, 0.0),  # ROI mask probabilities
    "pred_classes": (0.0, 0.0),  # exact
    "sem_seg": (1e-4, 1e-4),  # logits
}
# Fraction of pixels whose arg-max class must agree (only near-ties may flip).
MIN_ARGMAX_AGREEMENT = 0.999


@dataclass
class Comparison:
    """Per output: max |exported - eager| and its tolerance; argmax agreement for logits."""

    max_diff: Dict[str, float] = field(default_factory=dict)
    tolerance: Dict[str, float] = field(default_factory=dict)
    agreement: Dict[str, str] = field(default_factory=dict)
    problems: List[str] = field(default_factory=list)  # beyond the numbers: shapes, arg-max

    @property
    def ok(self) -> bool:
        within = all(self.max_diff[name] <= self.tolerance[name] for name in self.max_diff)
        return within and not self.problems

    def rows(self) -> List[str]:
        """Markdown cells: output | max abs diff | tolerance | agreement | ok."""
        return [
            f"{name} | {self.max_diff[name]:.3g} | {self.tolerance[name]:.3g} | {self.agreement.get(name, '')} | "
            f"{'yes' if self.max_diff[name] <= self.tolerance[name] else 'NO'}"
            for name in self.max_diff
        ] + [f"- | - | - | {problem} | NO" for problem in self.problems]


def compare_outputs(eager: Dict[str, Tensor], exported: Dict[str, Tensor], family: str) -> Comparison:
    """
    Compare named outputs (see :data:`TOLERANCES`). Instances must have the same number of
    detections; semantic logits (K, H, W) must also agree in arg-max on
    :data:`MIN_ARGMAX_AGREEMENT` of the pixels.
    """
    result = Comparison()
    for name, expected in eager.items():
        actual = exported[name]
        if tuple(actual.shape) != tuple(expected.shape):
            result.problems.append(f"{name}: shape {tuple(actual.shape)} vs eager {tuple(expected.shape)}")
            continue
        absolute, relative = TOLERANCES[name]
        expected, actual = expected.double(), actual.double()
        scale = float(expected.abs().max()) if expected.numel() else 0.0
        result.tolerance[name] = absolute + relative * scale
        result.max_diff[name] = float((actual - expected).abs().max()) if expected.numel() else 0.0
        if name == "sem_seg" and expected.numel():
            agreement = float((actual.argmax(0) == expected.argmax(0)).double().mean())
            result.agreement[name] = f"argmax {100 * agreement:.2f}%"
            if agreement < MIN_ARGMAX_AGREEMENT:
                result.problems.append(f"argmax agrees on {100 * agreement:.2f}% of pixels")
        if name == "pred_classes":
            result.agreement[name] = f"{expected.numel()} detections"
    return result
