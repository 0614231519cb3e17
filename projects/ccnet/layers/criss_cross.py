"""Functional criss-cross attention (2D and 3D) with a memory-lean custom backward.

Each position attends to every position that differs from it in at most one spatial
coordinate: its column and row in 2D (H+W-1 positions), its time line, column and row in 3D
(T+H+W-2 positions); the position itself is counted once. One softmax runs over all of these
unscaled query-key energies.

Implementation notes (see README, section "attention", for the measurements):

* Along each spatial axis the positions form lines (the columns, the rows, the time lines);
  per axis, the energies and weights of all lines are one (B, L, L) tensor, and every
  contraction is one ``bmm`` over packed lines (:mod:`ccnet.layers.line_layout` packs them with
  the cheapest copy the memory layout allows).
* The position itself appears on the diagonal of every axis; it is kept on the first axis only,
  by setting its energy on the other axes to ``-inf`` before the maximum (the first axis always
  keeps it, so no softmax row can be empty).
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

from .criss_cross_portable import criss_cross_portable, criss_cross_portable_3d
from .line_layout import LineSum, accumulation_order, all_lines, common_memory_format, in_layout_of

__all__ = [
    "criss_cross_attention",
    "criss_cross_attention_3d",
    "criss_cross_weights",
    "criss_cross_dense_matrix",
    "criss_cross_entropy",
    "CrissCrossAttentionFunction",
    "UnfaithfulExportError",
    "counted_as_one_op",
    "is_exporting",
]


# ----------------------------------------------------------------------------------------
# Softmax over the union of the lines through each position
# ----------------------------------------------------------------------------------------
def _stats_dtype(dtype: torch.dtype) -> torch.dtype:
    """Energies and softmax run in float32, or float64 for float64 inputs."""
    return torch.promote_types(dtype, torch.float32)


def _energies(query, key, lines):
    """Lines of queries and keys, and the energies (B, L, L) along every axis (float32+)."""
    dtype = _stats_dtype(query.dtype)
    query, key = query.to(dtype), key.to(dtype)
    packed = [(ln.pack(query), ln.pack(key)) for ln in lines]
    return packed, [ln.pair(q, k, dtype) for ln, (q, k) in zip(lines, packed)]


def _exclude_self_(energies):
    """The position itself is kept on the first axis only: its energy on the others is set to
    -inf, in place, before any maximum or exponential.

    There it is the same dot product through another GEMM, so it can exceed the kept copy by
    rounding; at energies of ~1e9 that difference is beyond exp's range, and a maximum taken
    over it would underflow every kept weight to 0 (0 / 0 = NaN)."""
    for e in energies[1:]:
        e.diagonal(dim1=-2, dim2=-1).fill_(float("-inf"))


def _softmax_(energies, lines):
    """
    Turns the energies into the attention weights, in place; returns the per-position
    log-sum-exp (N, *S). The position itself counted once (:func:`_exclude_self_`), then max
    subtraction, so no row can be empty or overflow.
    """
    _exclude_self_(energies)
    m = None
    for ln, e in zip(lines, energies):
        line_max = ln.unpack_scalars(e.amax(-1))
        m = line_max if m is None else torch.maximum(m, line_max)
    for ln, e in zip(lines, energies):
        e.sub_(ln.pack_scalars(m)).exp_()  # exp(-inf) = 0: the position itself counted once
    z = sum(ln.unpack_scalars(e.sum(-1)) for ln, e in zip(lines, energies))
    # z >= 1: the maximum kept energy contributes exp(0).
    for ln, e in zip(lines, energies):
        e.div_(ln.pack_scalars(z))
    return m + torch.log(z)


def _weights_from_lse_(energies, lines, lse):
    """The attention weights again, in place, from the energies and the saved log-sum-exp."""
    _exclude_self_(energies)
    for ln, e in zip(lines, energies):
        e.sub_(ln.pack_scalars(lse)).exp_()
    return energies


class UnfaithfulExportError(RuntimeError):
    """A JIT trace or export reached code whose traced graph would not compute the model."""


_COUNTED_AS_ONE_OP = False


@contextlib.contextmanager
def counted_as_one_op():
    """
    While active, a JIT trace records the eager :class:`CrissCrossAttentionFunction` as one
    ``prim::PythonOp`` node instead of the portable formulation, so that fvcore's FLOP counter
    counts it with the hand count of :func:`ccnet.layers.flop_count_handles` (H+W-1 positions,
    not the dense ``einsum`` shapes). The trace's outputs are not the model's: never export
    under it (:class:`ccnet.layers.FlopCountAnalysis` uses it for the count alone).
    """
    global _COUNTED_AS_ONE_OP
    previous, _COUNTED_AS_ONE_OP = _COUNTED_AS_ONE_OP, True
    try:
        yield
    finally:
        _COUNTED_AS_ONE_OP = previous


def is_exporting() -> bool:
    """
    True while a JIT trace (``torch.jit.trace``, the TorchScript ONNX exporter, fvcore),
    ``torch.onnx.export`` or ``torch.export`` (the dynamo ONNX exporter) runs. TorchScript
    scripting is decided separately, by :func:`torch.jit.is_scripting` in the callers.
    """
    if _COUNTED_AS_ONE_OP:
        return False
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting()


@contextlib.contextmanager
def _not_traced():
    """
    Keep the Function's internals out of a JIT trace: under :func:`counted_as_one_op` the
    subgraph of the ``prim::PythonOp`` holds this op alone (fvcore inlines it otherwise). The
    output must be created while traced and only filled in place here, or the tracer loses
    track of it. Any other trace would record an output filled by untraced code: refused.
    """
    state = torch._C._get_tracing_state()
    if state is not None and not _COUNTED_AS_ONE_OP:
        raise UnfaithfulExportError(
            "CrissCrossAttentionFunction was called directly inside a JIT trace: its kernels run "
            "outside the trace, so the traced graph would return a constant. Call "
            "ccnet.layers.criss_cross_attention / criss_cross_attention_3d (or the modules), which "
            "switch to the portable formulation when traced or exported."
        )
    torch._C._set_tracing_state(None)
    try:
        yield
    finally:
        torch._C._set_tracing_state(state)


# ----------------------------------------------------------------------------------------
# The autograd Function
# ----------------------------------------------------------------------------------------
class CrissCrossAttentionFunction(torch.autograd.Function):
    """
    Criss-cross attention: query, key (N, Cq, *S), value (N, C, *S) -> (N, C, *S), any number
    of spatial dims; the output takes value's memory format (NC* or channels-last).

    Saves only q, k, v and one float32 log-sum-exp per position; backward recomputes the
    weights. The value products run in value's dtype, energies and softmax in float32+.
    """

    @staticmethod
    def forward(ctx, query, key, value):
        # Created while traced (a JIT trace's subgraph then holds only this op), filled in place.
        out = torch.empty_like(value, memory_format=common_memory_format(value))
        with _not_traced():
            query, key, value = in_layout_of(value, query, key, value)
            lines = all_lines(value)
            _, weights = _energies(query, key, lines)
            lse = _softmax_(weights, lines)
            total = LineSum(out)
            for i in accumulation_order(lines):
                total.add(lines[i], weights[i], lines[i].pack(value))
        ctx.save_for_backward(query, key, value, lse)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        query, key, value, lse = ctx.saved_tensors
        (grad_out,) = in_layout_of(value, grad_out.to(value.dtype))
        lines = all_lines(value)
        order = accumulation_order(lines)
        packed_qk, weights = _energies(query, key, lines)
        weights = _weights_from_lse_(weights, lines, lse)

        # out[p] = sum_j w[p, j] v[j]:  dw[p, j] = <g[p], v[j]>,  dv[j] = sum_p w[p, j] g[p].
        # One axis at a time, so that at most one axis' packed g and v are alive at once.
        grad_v = torch.empty_like(value, memory_format=common_memory_format(value))
        grad_v_sum = LineSum(grad_v)
        grad_w = [None] * len(lines)
        for i in order:
            g = lines[i].pack(grad_out)
            grad_v_sum.add(lines[i], weights[i].transpose(1, 2), g)
            grad_w[i] = lines[i].pair(g, lines[i].pack(value), lse.dtype)
            del g

        # Softmax backward: de[p, j] = w[p, j] (dw[p, j] - sum_j' w[p, j'] dw[p, j']).
        delta = sum(
            ln.unpack_scalars((w * gw).sum(-1)) for ln, w, gw in zip(lines, weights, grad_w)
        )
        grad_q = torch.empty_like(query, dtype=lse.dtype, memory_format=common_memory_format(value))
        grad_k = torch.empty_like(key, dtype=lse.dtype, memory_format=common_memory_format(value))
        grad_q_sum, grad_k_sum = LineSum(grad_q), LineSum(grad_k)
        for i in order:
            q, k = packed_qk[i]
            grad_e = grad_w[i].sub_(lines[i].pack_scalars(delta)).mul_(weights[i])
            grad_q_sum.add(lines[i], grad_e, k)
            grad_k_sum.add(lines[i], grad_e.transpose(1, 2), q)
        return grad_q.to(query.dtype), grad_k.to(key.dtype), grad_v


# ----------------------------------------------------------------------------------------
# Public functional API
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


def _criss_cross(query, key, value):
    if is_exporting():
        portable = criss_cross_portable if value.dim() == 4 else criss_cross_portable_3d
        return portable(query, key, value)
    device_type = value.device.type
    if torch.is_autocast_enabled(device_type) and value.is_floating_point():
        # Like autocast does for matmul: the value products run in the autocast dtype.
        # Energies and softmax run in float32 inside the Function anyway.
        value = value.to(torch.get_autocast_dtype(device_type))
    # A spatial axis of size 1 only holds the position itself, which the first remaining axis
    # counts: dropping it changes nothing but the work (and makes T=1 exactly the 2D case).
    shape = value.shape
    kept = [s for s in shape[2:] if s > 1] or [1]
    if len(kept) < len(shape) - 2:
        query, key, value = (t.reshape(*t.shape[:2], *kept) for t in (query, key, value))
    with torch.autocast(device_type, enabled=False):
        out = CrissCrossAttentionFunction.apply(query, key, value)
    return out.reshape(shape)


def criss_cross_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor
) -> torch.Tensor:
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
    if torch.jit.is_scripting():
        return criss_cross_portable(query, key, value)
    if not torch.jit.is_tracing():  # (a trace would record the checks' shape comparisons)
        _check_inputs("criss_cross_attention", query, key, value, spatial_dims=2)
    return _criss_cross(query, key, value)


def criss_cross_attention_3d(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor
) -> torch.Tensor:
    """
    3D (video) criss-cross attention.

    Args:
        query, key: (N, Cq, T, H, W).
        value: (N, C, T, H, W).
    Returns:
        (N, C, T, H, W): each position attends to its time line, column and row
        (T+H+W-2 positions, itself once). Same guarantees as :func:`criss_cross_attention`.
    """
    if torch.jit.is_scripting():
        return criss_cross_portable_3d(query, key, value)
    if not torch.jit.is_tracing():  # (a trace would record the checks' shape comparisons)
        _check_inputs("criss_cross_attention_3d", query, key, value, spatial_dims=3)
    return _criss_cross(query, key, value)


def _off_diagonal(x: torch.Tensor) -> torch.Tensor:
    """(..., L, L) -> (..., L, L-1): each row without its diagonal entry, order kept."""
    length = x.shape[-1]
    flat = x.flatten(-2)[..., 1:].unflatten(-1, (length - 1, length + 1))[..., :-1]
    return flat.reshape(*x.shape[:-2], length, length - 1)


def criss_cross_weights(query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """
    The 2D attention weights, for visualisation and tests (not differentiable).

    Args:
        query, key: (N, Cq, H, W).
    Returns:
        (N, H, W, H+W-1) softmax weights of position (y, x); the last dim holds the column
        (H entries, y' = 0..H-1, the position itself included) then the row without the
        position itself (W-1 entries, x' != x in increasing order). Sums to 1.
    """
    _check_inputs("criss_cross_weights", query, key, query, spatial_dims=2)
    n, _, h, w = query.shape
    lines = all_lines(query)
    with torch.no_grad(), torch.autocast(query.device.type, enabled=False):
        _, (col, row) = _energies(query, key, lines)
        _softmax_([col, row], lines)
    col = col.view(n, w, h, h).transpose(1, 2)  # (N, W, H, H') -> (N, H, W, H')
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


def criss_cross_entropy(query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """
    Entropy of every position's attention weights, normalised by that of uniform weights
    (a training diagnostic; not differentiable).

    Args:
        query, key: (N, Cq, *S) with S = (H, W) or (T, H, W).
    Returns:
        (N, *S) in [0, 1]: ``-sum_j w_j log w_j / log(L)`` over the L positions the position
        sees (H+W-1 in 2D, T+H+W-2 in 3D); 1 = uniform over the criss-cross, 0 = one position.
    """
    if query.dim() not in (4, 5) or query.shape != key.shape:
        raise ValueError(f"criss_cross_entropy: query and key must be equal (N, C, *S) shapes, got {tuple(query.shape)}, {tuple(key.shape)}")
    lines = all_lines(query)
    attended = sum(query.shape[2:]) - (query.dim() - 3)
    with torch.no_grad(), torch.autocast(query.device.type, enabled=False):
        _, weights = _energies(query, key, lines)
        _softmax_(weights, lines)
        entropy = sum(ln.unpack_scalars(torch.special.entr(w).sum(-1)) for ln, w in zip(lines, weights))
    return entropy / math.log(attended) if attended > 1 else torch.zeros_like(entropy)
