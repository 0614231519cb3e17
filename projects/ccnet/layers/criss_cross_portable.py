"""Criss-cross attention in standard tensor ops only, for tracing, scripting and export.

The eager path (:class:`ccnet.layers.CrissCrossAttentionFunction`) is a custom autograd
Function with in-place kernels over packed lines: fast and lean in training, but a JIT trace or
an ONNX exporter cannot see inside it. This module computes the same function with ops every
exporter knows (``einsum``, ``exp``, ``amax``, ``sum``, ``arange``, comparisons), so a traced,
scripted or exported model computes what the eager one computes, at any input size:

* energies, one ``einsum`` per axis: (N, *S, L_axis), in float32 (float64 for float64 inputs);
* one softmax over the union of the axes: the position itself, which lies on every axis, is
  kept on the first axis only (dropped on the others by a 0/1 mask built from ``arange``
  comparisons, before the maximum is taken: no ``diag``, no ``eye``, no ``-inf`` fill; the
  first axis keeps it, so no row can be empty), then the maximum is subtracted;
* the weighted sums, one ``einsum`` per axis, in value's dtype.

Every function here is TorchScript-compatible. Memory is that of the materialised energies,
(N, *S, sum(S)) floats: as the public formulations, unlike the eager Function.
"""
from typing import List

import torch

__all__ = ["criss_cross_portable", "criss_cross_portable_3d"]


def _not_self(length: int, like: torch.Tensor) -> torch.Tensor:
    """(L, L) in like's dtype and device: 0 where the two indices are equal, 1 elsewhere."""
    index = torch.arange(length, device=like.device)
    return (index.unsqueeze(1) != index.unsqueeze(0)).to(like.dtype)


def _softmax_over_axes(energies: List[torch.Tensor], masks: List[torch.Tensor]) -> List[torch.Tensor]:
    """
    One softmax over the concatenation of ``energies`` (each (N, *S, L_i)) along their last dim;
    ``masks[i]`` (broadcastable to energies[i], 0/1) drops the entries of axis i where it is 0;
    the first axis drops none (``masks[0]`` is all ones).
    Returns the weights, one tensor per axis.
    """
    # Dropped entries take the first axis's maximum before the overall maximum is taken: the
    # position itself on the other axes is the same dot product through another einsum and can
    # exceed the kept copy by rounding, which at energies of ~1e9 is beyond exp's range (every
    # kept weight would underflow: 0 / 0). No -inf, so no infinite constant in an exported graph.
    peak = energies[0].amax(-1, keepdim=True)
    kept = [energies[0]] + [torch.where(mask > 0, e, peak) for e, mask in zip(energies[1:], masks[1:])]
    for e in kept[1:]:
        peak = torch.maximum(peak, e.amax(-1, keepdim=True))
    exps: List[torch.Tensor] = []
    for e, mask in zip(kept, masks):
        exps.append(torch.exp(e - peak) * mask)
    total = exps[0].sum(-1, keepdim=True)
    for x in exps[1:]:
        total = total + x.sum(-1, keepdim=True)
    return [x / total for x in exps]


def _stats_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def criss_cross_portable(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """
    2D criss-cross attention: query, key (N, Cq, H, W), value (N, C, H, W) -> (N, C, H, W).

    The same function as :func:`ccnet.layers.criss_cross_attention` (column: H positions, the
    position itself included; row: the W-1 others), written in standard ops.
    """
    dtype = _stats_dtype(query.dtype)
    q, k = query.to(dtype), key.to(dtype)
    column = torch.einsum("nchw,nciw->nhwi", q, k)  # (N, H, W, H')
    row = torch.einsum("nchw,nchj->nhwj", q, k)  # (N, H, W, W')
    ones = torch.ones(1, dtype=dtype, device=q.device)
    w_column, w_row = _softmax_over_axes([column, row], [ones, _not_self(row.shape[-1], row)])
    v = value
    out = torch.einsum("nhwi,nciw->nchw", w_column.to(v.dtype), v)
    return out + torch.einsum("nhwj,nchj->nchw", w_row.to(v.dtype), v)


def criss_cross_portable_3d(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """
    3D criss-cross attention: query, key (N, Cq, T, H, W), value (N, C, T, H, W) ->
    (N, C, T, H, W); the time line (T positions, itself included), then the column and the row
    (the H-1 and W-1 others). The same function as :func:`ccnet.layers.criss_cross_attention_3d`.
    """
    dtype = _stats_dtype(query.dtype)
    q, k = query.to(dtype), key.to(dtype)
    time = torch.einsum("ncthw,ncshw->nthws", q, k)  # (N, T, H, W, T')
    column = torch.einsum("ncthw,nctiw->nthwi", q, k)  # (N, T, H, W, H')
    row = torch.einsum("ncthw,ncthj->nthwj", q, k)  # (N, T, H, W, W')
    ones = torch.ones(1, dtype=dtype, device=q.device)
    column_mask = _not_self(column.shape[-1], column).unsqueeze(1)  # (H, 1, H'): dims h, w, h'
    row_mask = _not_self(row.shape[-1], row)  # (W, W'): dims w, w'
    w_time, w_column, w_row = _softmax_over_axes([time, column, row], [ones, column_mask, row_mask])
    v = value
    out = torch.einsum("nthws,ncshw->ncthw", w_time.to(v.dtype), v)
    out = out + torch.einsum("nthwi,nctiw->ncthw", w_column.to(v.dtype), v)
    return out + torch.einsum("nthwj,ncthj->ncthw", w_row.to(v.dtype), v)
