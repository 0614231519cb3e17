"""What a trained RCCA module attends to: attention maps, drawn as in the CCNet paper's figure.

Pass r of the recurrent criss-cross attention mixes the values with a dense-equivalent
matrix A_r (N, P, P), P = H*W, that is zero off each position's row and column.  The map of
the first r passes is the product ``A_r @ ... @ A_1``: its row p says how much position p's
output draws from every position through r hops.  R=1 covers the criss-cross of p; R=2 covers
the whole image.  Each A_r is computed from the query/key projections of *that* pass's input,
captured with a forward pre-hook on the :class:`~ccnet.layers.CrissCrossAttention` module.
"""
import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from .layers import CrissCrossAttention, criss_cross_blocks, criss_cross_dense_matrix

__all__ = [
    "AttentionInputRecorder",
    "find_criss_cross_attention",
    "pass_attention_matrices",
    "compose_passes",
    "attention_maps",
    "draw_attention_figure",
]


class AttentionInputRecorder:
    """Context manager recording the input x (N, C, H, W) of every call of a module.

    With an RCCA's ``attention`` module, ``inputs[r]`` is the input of pass r + 1.
    """

    def __init__(self, module: nn.Module):
        self.module = module
        self.inputs: List[torch.Tensor] = []
        self._handle = None

    def _record(self, module, args):
        self.inputs.append(args[0].detach())

    def __enter__(self) -> "AttentionInputRecorder":
        self.inputs = []
        self._handle = self.module.register_forward_pre_hook(self._record)
        return self

    def __exit__(self, *exc) -> None:
        self._handle.remove()


def find_criss_cross_attention(model: nn.Module, name: Optional[str] = None) -> Tuple[str, CrissCrossAttention]:
    """The model's :class:`CrissCrossAttention` called ``name`` (default: the last one).

    Raises:
        ValueError: the model has none, or none of that name (the message lists them).
    """
    found = criss_cross_blocks(model)
    if not found:
        raise ValueError(f"{type(model).__name__} has no CrissCrossAttention module (is its context RCCA?)")
    if name is None:
        name = list(found)[-1]
    if name not in found:
        raise ValueError(f"no CrissCrossAttention named {name!r}; the model has: {', '.join(found)}")
    return name, found[name]


@torch.no_grad()
def pass_attention_matrices(attention: CrissCrossAttention, inputs: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    """The dense attention matrix (N, H*W, H*W) of each pass, from that pass's input."""
    return [criss_cross_dense_matrix(attention.query(x), attention.key(x)) for x in inputs]


def compose_passes(matrices: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    """Cumulative compositions ``[A_1, A_2 @ A_1, A_3 @ A_2 @ A_1, ...]`` of per-pass matrices."""
    composed = []
    for matrix in matrices:
        composed.append(matrix if not composed else torch.bmm(matrix, composed[-1]))
    return composed


def _feature_stride(input_size: Tuple[int, int], feature_size: Tuple[int, int]) -> int:
    """The power-of-two stride of a feature map of a (possibly padded) input."""
    return 2 ** round(math.log2(input_size[0] / feature_size[0]))


def attention_maps(
    model: nn.Module, inputs: Dict, pixel: Tuple[int, int], module_name: Optional[str] = None
) -> Dict[str, np.ndarray]:
    """Run ``model`` (eval mode) on one image and return the attention maps of one pixel.

    Args:
        model: a semantic segmentation model with a CrissCrossAttention (in an RCCA).
        inputs: the model's input dict: ``image`` (C, h, w) as the model takes it (already
            resized), ``height`` and ``width`` of the original image.
        pixel: (x, y) in original image coordinates.
        module_name: which CrissCrossAttention (default: the last one of the model).

    Returns:
        ``maps``: (R, height, width) float: the map of the first r passes composed, r = 1..R
        (nearest-neighbour upsampled; each sums to 1 over the feature cells);
        ``prediction``: (height, width) int class ids; ``cell``: (x, y) feature cell of the pixel.
    """
    x, y = pixel
    height, width = inputs["height"], inputs["width"]
    if not (0 <= x < width and 0 <= y < height):
        raise ValueError(f"pixel (x={x}, y={y}) is outside the {width}x{height} image")
    _, attention = find_criss_cross_attention(model, module_name)
    model.eval()
    with torch.no_grad(), AttentionInputRecorder(attention) as recorder:
        prediction = model([inputs])[0]["sem_seg"].argmax(0).cpu().numpy()
    if not recorder.inputs:
        raise RuntimeError("the CrissCrossAttention module was not called (recurrence 0?)")
    composed = compose_passes(pass_attention_matrices(attention, recorder.inputs))

    h_in, w_in = inputs["image"].shape[-2:]
    h_feat, w_feat = recorder.inputs[0].shape[-2:]
    stride = _feature_stride((h_in, w_in), (h_feat, w_feat))
    cell_x = min(int(x * w_in / width) // stride, w_feat - 1)
    cell_y = min(int(y * h_in / height) // stride, h_feat - 1)
    maps = []
    for matrix in composed:
        cells = matrix[0, cell_y * w_feat + cell_x].view(h_feat, w_feat).float().cpu().numpy()
        pixels = np.kron(cells, np.ones((stride, stride), np.float32))[:h_in, :w_in]
        maps.append(_resize_nearest(pixels, height, width))
    return {"maps": np.stack(maps), "prediction": prediction, "cell": (cell_x, cell_y)}


def _resize_nearest(array: np.ndarray, height: int, width: int) -> np.ndarray:
    rows = np.minimum((np.arange(height) + 0.5) * array.shape[0] / height, array.shape[0] - 1).astype(int)
    cols = np.minimum((np.arange(width) + 0.5) * array.shape[1] / width, array.shape[1] - 1).astype(int)
    return array[rows][:, cols]


def draw_attention_figure(
    image: np.ndarray,
    pixel: Tuple[int, int],
    maps: np.ndarray,
    output_file: str,
    prediction: Optional[np.ndarray] = None,
    class_colors: Optional[Sequence[Sequence[int]]] = None,
) -> None:
    """Save a PNG: the image with the pixel marked, then one attention map per pass count.

    Args:
        image: (H, W, 3) uint8 RGB.
        maps: (R, H, W) from :func:`attention_maps`; panel r is titled "R=r".
        prediction, class_colors: optionally a last panel with the predicted classes.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 1 + len(maps) + (prediction is not None)
    fig, axes = plt.subplots(1, panels, figsize=(3.2 * panels, 3.4), squeeze=False)
    axes = axes[0]
    axes[0].imshow(image)
    axes[0].set_title(f"input, pixel ({pixel[0]}, {pixel[1]})")
    for r, (ax, attention_map) in enumerate(zip(axes[1:], maps), start=1):
        ax.imshow(image)
        ax.imshow(attention_map / max(float(attention_map.max()), 1e-12), cmap="jet", alpha=0.55, vmin=0, vmax=1)
        ax.set_title(f"R={r}" + (" (pass 1)" if r == 1 else f" (passes 1-{r} composed)"))
    if prediction is not None:
        colors = np.asarray(class_colors, np.uint8) if class_colors is not None else None
        axes[-1].imshow(colors[prediction] if colors is not None else prediction)
        axes[-1].set_title("prediction")
    for ax in axes:
        ax.plot([pixel[0]], [pixel[1]], marker="x", color="white", markersize=10, markeredgewidth=2.5)
        ax.plot([pixel[0]], [pixel[1]], marker="x", color="black", markersize=7, markeredgewidth=1.2)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(output_file, dpi=100, bbox_inches="tight")
    plt.close(fig)
