"""Functional criss-cross attention (2D and 3D) with a memory-lean custom backward.

Each position attends to every position that differs from it in at most one spatial
coordinate: its column and row in 2D (H+W-1 positions), its time line, column and row in 3D
(T+H+W-2 positions); the position itself is counted once. One softmax runs over all of these
unscaled query-key energies.

Implementation notes (see README, section "attention"):

* Tensors are processed channels-last, ``(N, *S, C)``. Along every spatial axis the "lines"
  (e.g. the columns of an image) are then ordinary row-major matrices whose rows are
  ``C``-contiguous, so every contraction is a batched matrix product on strided *views*:
  no permuted copies of the values are made.
* The energies are kept per axis, ``(outer, inner, L, L)``. The position itself appears on the
  diagonal of every axis; it is kept in the first axis only, by zeroing the *probabilities*
  on the diagonal of the other axes after the exponential (never a ``-inf`` fill), so a
  softmax row can never be all-masked.
* The softmax uses max subtraction, in float32 (float64 for float64 inputs) whatever the
  input dtype; under autocast only the big value products run in the autocast dtype.
* :class:`CrissCrossAttentionFunction` saves q, k, v and one log-sum-exp per position; the
  attention weights are recomputed in backward instead of being stored.
"""
import contextlib
import math
from typing import List

import torch
from torch.autograd.function import once_differentiable

__all__ = [
    "criss_cross_attention",
    "criss_cross_attention_3d",
    "criss_cross_weights",
    "criss_cross_dense_matrix",
    "CrissCrossAttentionFunction",
]


# ----------------------------------------------------------------------------------------
# Lines along one axis of a channels-last tensor (N, *S, C)
# ----------------------------------------------------------------------------------------
def _axis_split(shape, axis: int):
    """Sizes (outer, L, inner) of a channels-last shape (N, *S, C) around spatial `axis`."""
    return math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1 : -1])


def _lines(x: torch.Tensor, axis: int) -> List[torch.Tensor]:
    """
    Views of the lines of `x` (N, *S, C), contiguous, along `axis`, as a list of 3-D tensors
    (B, L, C) (batched matrices whose row l is the position l on the line). No copy.
    """
    outer, length, inner = _axis_split(x.shape, axis)
    channels = x.shape[-1]
    if inner == 1:
        return [x.view(outer, length, channels)]
    lines = x.view(outer, length, inner, channels).transpose(1, 2)  # (outer, inner, L, C)
    return list(lines.unbind(0))


def _weight_batches(w: torch.Tensor) -> List[torch.Tensor]:
    """Split per-axis weights (outer, inner, L, L) like :func:`_lines` splits the lines."""
    outer, inner, length, _ = w.shape
    if inner == 1:
        return [w.view(outer, length, length)]
    return list(w.unbind(0))


def _to_positions(t: torch.Tensor, shape, axis: int) -> torch.Tensor:
    """Per-line-entry values (outer, inner, L) -> per-position values (N, *S)."""
    return t.transpose(1, 2).reshape(shape[:-1])


def _from_positions(p: torch.Tensor, axis: int) -> torch.Tensor:
    """Per-position values (N, *S) -> (outer, inner, L, 1), broadcastable to the weights."""
    outer, length, inner = _axis_split(tuple(p.shape) + (1,), axis)
    return p.reshape(outer, length, inner).transpose(1, 2).unsqueeze(-1)


def _pairwise(a: torch.Tensor, b: torch.Tensor, axis: int) -> torch.Tensor:
    """
    Dot products between positions on the same line along `axis`:
    ``out[o, i, l, l'] = <a[o, l, i, :], b[o, l', i, :]>`` for a, b of shape (N, *S, C).
    Returns (outer, inner, L, L). Differentiable (used by :func:`criss_cross_weights`).
    """
    products = [torch.bmm(x, y.transpose(1, 2)) for x, y in zip(_lines(a, axis), _lines(b, axis))]
    outer, length, inner = _axis_split(a.shape, axis)
    stacked = products[0] if len(products) == 1 else torch.stack(products)
    return stacked.view(outer, inner, length, length)


def _gather_lines(weights, x, axis, out, beta, transpose=False):
    """
    ``out[o, l, i, :] = beta * out[o, l, i, :] + sum_l' w[o, i, l, l'] x[o, l', i, :]`` in place,
    with w = `weights` (outer, inner, L, L) (transposed on the last two dims if `transpose`),
    x and out channels-last (N, *S, C) contiguous. Not differentiable (used inside the Function).
    """
    for w, src, dst in zip(_weight_batches(weights), _lines(x, axis), _lines(out, axis)):
        dst.baddbmm_(w.transpose(1, 2) if transpose else w, src, beta=beta)


def _self_mask(length: int, device) -> torch.Tensor:
    return torch.eye(length, dtype=torch.bool, device=device)


# ----------------------------------------------------------------------------------------
# Softmax over the union of the lines through each position
# ----------------------------------------------------------------------------------------
def _energies(query: torch.Tensor, key: torch.Tensor) -> List[torch.Tensor]:
    """Per-axis energies (outer, inner, L, L) of channels-last q, k, in float32 or wider."""
    dtype = torch.promote_types(query.dtype, torch.float32)
    query, key = query.to(dtype), key.to(dtype)
    return [_pairwise(query, key, axis) for axis in range(1, query.dim() - 1)]


def _exp_shifted(energies, shift, shape):
    """exp(E - shift) per axis, the position itself zeroed on every axis but the first."""
    out = []
    for axis, e in enumerate(energies, start=1):
        p = torch.exp(e - _from_positions(shift, axis))
        if axis > 1:
            p = p.masked_fill(_self_mask(e.shape[-1], e.device), 0.0)
        out.append(p)
    return out


def _log_sum_exp(energies, shape) -> torch.Tensor:
    """log of the softmax normaliser of every position, (N, *S), with max subtraction."""
    m = None
    for axis, e in enumerate(energies, start=1):
        line_max = _to_positions(e.amax(-1), shape, axis)
        m = line_max if m is None else torch.maximum(m, line_max)
    z = sum(
        _to_positions(p.sum(-1), shape, axis)
        for axis, p in enumerate(_exp_shifted(energies, m, shape), start=1)
    )
    # z >= 1: the maximum energy contributes exp(0) on the axis where it was found
    # (or, for the position itself, on the first axis).
    return m + torch.log(z)


def _softmax_weights(query: torch.Tensor, key: torch.Tensor, lse=None):
    """Per-axis attention weights (outer, inner, L, L) and the per-position log-sum-exp."""
    shape = tuple(query.shape[:-1]) + (1,)
    energies = _energies(query, key)
    if lse is None:
        lse = _log_sum_exp(energies, shape)
    return _exp_shifted(energies, lse, shape), lse


@contextlib.contextmanager
def _not_traced():
    """
    Keep the Function's internals out of a JIT trace (fvcore's FLOP counter inlines the
    subgraph of a ``prim::PythonOp``): the op is counted once, by
    :func:`ccnet.layers.flop_count_handles`. The output must be created while traced and
    only filled in place here, or the tracer loses track of it.
    """
    state = torch._C._get_tracing_state()
    torch._C._set_tracing_state(None)
    try:
        yield
    finally:
        torch._C._set_tracing_state(state)


# ----------------------------------------------------------------------------------------
# The autograd Function (channels-last in and out)
# ----------------------------------------------------------------------------------------
class CrissCrossAttentionFunction(torch.autograd.Function):
    """
    Criss-cross attention on channels-last contiguous tensors:
    query, key (N, *S, Cq), value (N, *S, C) -> (N, *S, C), any number of spatial dims.

    Saves only q, k, v and one float32 log-sum-exp per position; backward recomputes the
    weights. The value products run in value's dtype, energies and softmax in float32+.
    """

    @staticmethod
    def forward(ctx, query, key, value):
        out = torch.empty_like(value)  # traced: a JIT trace's subgraph holds only this op
        with _not_traced():
            weights, lse = _softmax_weights(query, key)
            for axis, w in enumerate(weights, start=1):
                _gather_lines(w.to(value.dtype), value, axis, out, beta=0 if axis == 1 else 1)
        ctx.save_for_backward(query, key, value, lse)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        query, key, value, lse = ctx.saved_tensors
        grad_out = grad_out.to(value.dtype).contiguous()
        weights, _ = _softmax_weights(query, key, lse)
        stats_dtype = lse.dtype
        shape = tuple(query.shape[:-1]) + (1,)
        axes = list(enumerate(weights, start=1))

        # d out / d w[p, j] = <g[p], v[j]>;  softmax backward needs sum_j w[p, j] dw[p, j].
        grad_w = [_pairwise(grad_out, value, axis).to(stats_dtype) for axis, _ in axes]
        delta = sum(_to_positions((w * gw).sum(-1), shape, axis) for (axis, w), gw in zip(axes, grad_w))

        q32, k32 = query.to(stats_dtype), key.to(stats_dtype)
        grad_q = torch.empty_like(q32)
        grad_k = torch.empty_like(k32)
        grad_v = torch.empty_like(value)
        for (axis, w), gw in zip(axes, grad_w):
            grad_e = w * (gw - _from_positions(delta, axis))
            beta = 0 if axis == 1 else 1
            _gather_lines(grad_e, k32, axis, grad_q, beta)
            _gather_lines(grad_e, q32, axis, grad_k, beta, transpose=True)
            _gather_lines(w.to(value.dtype), grad_out, axis, grad_v, beta, transpose=True)
        return grad_q.to(query.dtype), grad_k.to(key.dtype), grad_v


# ----------------------------------------------------------------------------------------
# Public functional API (channels-first tensors)
# ----------------------------------------------------------------------------------------
def _check_inputs(name, query, key, value, spatial_dims):
    dims = 2 + spatial_dims
    layout = "(N, C, H, W)" if spatial_dims == 2 else "(N, C, T, H, W)"
    for arg, t in (("query", query), ("key", key), ("value", value)):
        if not isinstance(t, torch.Tensor) or t.dim() != dims:
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name}: {arg} must be a {dims}-D tensor {layout}, got {got}")
    if query.shape != key.shape:
        raise ValueError(f"{name}: query {tuple(query.shape)} and key {tuple(key.shape)} differ")
    if value.shape[0] != query.shape[0] or value.shape[2:] != query.shape[2:]:
        raise ValueError(
            f"{name}: value {tuple(value.shape)} must match query {tuple(query.shape)} "
            "in batch and spatial size"
        )
    if query.shape[1] < 1 or value.shape[1] < 1 or min(query.shape[2:]) < 1:
        raise ValueError(f"{name}: empty channel or spatial dimension in {tuple(query.shape)}")


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    """(N, C, *S) -> (N, *S, C) contiguous; free for a channels-last tensor."""
    return x.movedim(1, -1).contiguous()


def _criss_cross(query, key, value):
    device_type = value.device.type
    if torch.is_autocast_enabled(device_type) and value.is_floating_point():
        # Like autocast does for matmul: the value products run in the autocast dtype.
        # Energies and softmax run in float32 inside the Function anyway.
        value = value.to(torch.get_autocast_dtype(device_type))
    value_channels_last = value.movedim(1, -1).is_contiguous()
    # A spatial axis of size 1 only holds the position itself, which the first remaining axis
    # counts: dropping it changes nothing but the work (and makes T=1 exactly the 2D case).
    shape = value.shape
    kept = [s for s in shape[2:] if s > 1] or [1]
    query, key, value = (t.reshape(*t.shape[:2], *kept) for t in (query, key, value))
    with torch.autocast(device_type, enabled=False):
        out = CrissCrossAttentionFunction.apply(
            _channels_last(query), _channels_last(key), _channels_last(value)
        ).movedim(-1, 1)
    out = out.reshape(shape)
    # Return the memory format of `value` (a permuted view only if value was channels-last).
    return out if value_channels_last else out.contiguous()


def criss_cross_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """
    2D criss-cross attention.

    Args:
        query, key: (N, Cq, H, W).
        value: (N, C, H, W).
    Returns:
        (N, C, H, W): at each position, the softmax-weighted sum of the values on its column and
        row (H+W-1 positions, itself once), weights = softmax of the unscaled query-key energies.
        Same memory format as `value`; dtype of `value` (the autocast dtype under autocast).
    """
    _check_inputs("criss_cross_attention", query, key, value, spatial_dims=2)
    return _criss_cross(query, key, value)


def criss_cross_attention_3d(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """
    3D (video) criss-cross attention.

    Args:
        query, key: (N, Cq, T, H, W).
        value: (N, C, T, H, W).
    Returns:
        (N, C, T, H, W): each position attends to its time line, column and row
        (T+H+W-2 positions, itself once). Same guarantees as :func:`criss_cross_attention`.
    """
    _check_inputs("criss_cross_attention_3d", query, key, value, spatial_dims=3)
    return _criss_cross(query, key, value)


def _off_diagonal(x: torch.Tensor) -> torch.Tensor:
    """(..., L, L) -> (..., L, L-1): each row without its diagonal entry, order kept."""
    length = x.shape[-1]
    flat = x.flatten(-2)[..., 1:].unflatten(-1, (length - 1, length + 1))[..., :-1]
    return flat.reshape(*x.shape[:-2], length, length - 1)


def criss_cross_weights(query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """
    The 2D attention weights (differentiable, for visualisation and tests).

    Args:
        query, key: (N, Cq, H, W).
    Returns:
        (N, H, W, H+W-1) softmax weights of position (y, x); the last dim holds the column
        (H entries, y' = 0..H-1, the position itself included) then the row without the
        position itself (W-1 entries, x' != x in increasing order). Sums to 1.
    """
    _check_inputs("criss_cross_weights", query, key, query, spatial_dims=2)
    n, _, h, w = query.shape
    with torch.autocast(query.device.type, enabled=False):
        (col, row), _ = _softmax_weights(_channels_last(query), _channels_last(key))
    col = col.permute(0, 2, 1, 3)  # (N, W, H, H') -> (N, H, W, H')
    row = _off_diagonal(row.view(n, h, w, w))
    return torch.cat([col, row], dim=-1)


def criss_cross_dense_matrix(query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """
    The 2D attention as a dense (N, H*W, H*W) matrix A with A[n, p, j] the weight of position
    j (flattened y*W + x) in the output at p; zero off the criss-cross. ``out = A @ value``
    (value as (N, H*W, C)), and two recurrent passes compose as a matrix product.
    Quadratic memory: for visualisation and small sizes only.
    """
    n, _, h, w = query.shape
    weights = criss_cross_weights(query, key).reshape(n, h * w, h + w - 1)
    ys = torch.arange(h, device=query.device).view(h, 1, 1)
    xs = torch.arange(w, device=query.device).view(1, w, 1)
    column = torch.arange(h, device=query.device).view(1, 1, h) * w + xs  # (H'=any, x)
    row = ys * w + _off_diagonal(torch.arange(w, device=query.device).expand(w, w)).unsqueeze(0)
    index = torch.cat([column.expand(h, w, h), row.expand(h, w, w - 1)], dim=-1)
    index = index.reshape(1, h * w, h + w - 1).expand(n, -1, -1)
    return weights.new_zeros(n, h * w, h * w).scatter(2, index, weights)
