"""
Lines of positions along one spatial axis, as batched matrices for ``bmm``.

Criss-cross attention is a set of small dense attentions, one per line of positions (every
column and every row of an image, plus every time line of a clip), each run as one ``bmm`` over
all the lines of an axis. How the lines of a ``(N, C, *S)`` tensor become batched matrices
decides most of the speed on CPU, where permuted copies of 512-channel features cost a large
share of the products themselves:

* a strided view is used whenever ``bmm`` can read it as it is (each line a matrix with one
  unit stride, one stride for the batch of lines): in a channels-last tensor every line of
  every axis is such a view when the batch is 1, and the rows are for any batch; in an NCHW
  tensor the rows are when the batch is 1. ``bmm``'s result is always written contiguous (a
  strided output makes PyTorch's CPU ``bmm`` run one small GEMM per line, which collapses when
  the cores are shared);
* the columns of an NCHW tensor: the packed dim order is a rotation of the memory order, so the
  copy is one 2D transpose per sample, which PyTorch runs cache-blocked (several times faster on
  CPU than a general permuted copy);
* otherwise a permuted copy (in a channels-last tensor it moves contiguous runs of C values).

So for an NCHW batch of 1, only the columns are copied (in and out); in channels-last nothing
is, except the columns' result, added into the output as runs of C values.

Dims are named by their index in ``(N, C, *S)``: 0 = batch, 1 = channels, 2 + a = spatial axis a.
"""
import math
from typing import List, Optional

import torch

__all__ = [
    "Lines",
    "LineSum",
    "accumulation_order",
    "all_lines",
    "common_memory_format",
    "copy_permuted",
    "in_layout_of",
    "memory_order",
]


def memory_order(x: torch.Tensor) -> Optional[List[int]]:
    """
    Dims of x (N, C, *S) from outermost to innermost in memory, if every sample is dense in
    NC* or channels-last order (the batch stride may be larger: e.g. a channel slice of a
    bigger tensor); None otherwise.
    """
    if x.dim() < 3 or x.shape[0] == 0:
        return list(range(x.dim())) if x.is_contiguous() else None
    sample = x[0]
    if x.shape[0] > 1 and x.stride(0) < sample.numel():
        return None
    if sample.is_contiguous():
        return list(range(x.dim()))
    if sample.movedim(0, -1).is_contiguous():
        return [0] + list(range(2, x.dim())) + [1]
    return None


def common_memory_format(x: torch.Tensor) -> torch.memory_format:
    """The memory format matching x's :func:`memory_order`: channels-last (2D/3D) or NC*."""
    order = memory_order(x)
    if x.dim() in (4, 5) and order is not None and order[-1] == 1 and not x.is_contiguous():
        return torch.channels_last if x.dim() == 4 else torch.channels_last_3d
    return torch.contiguous_format


def in_layout_of(like: torch.Tensor, *tensors: torch.Tensor):
    """The tensors laid out like `like` (NC* or channels-last; a copy only where they differ)."""
    memory_format = common_memory_format(like)
    if memory_format == torch.contiguous_format:
        order = list(range(like.dim()))
    else:
        order = memory_order(like)
    return tuple(
        t if memory_order(t) == order else t.contiguous(memory_format=memory_format)
        for t in tensors
    )


def _rotation(source: List[int], target: List[int]) -> Optional[int]:
    """k such that target[1:] is source[1:] rotated left by k (0 < k), or None."""
    src, tgt = source[1:], target[1:]
    for k in range(1, len(src)):
        if src[k:] + src[:k] == tgt:
            return k
    return None


def copy_permuted(
    x: torch.Tensor, target: List[int], out: Optional[torch.Tensor] = None, source_order=None
) -> torch.Tensor:
    """
    ``x.permute(target).contiguous()``, written into `out` if given (contiguous, that shape).
    When `target` is a rotation of x's memory order (`source_order`, default
    :func:`memory_order`), one 2D transpose per sample: PyTorch's cache-blocked transpose copy.
    Without `out`, a view if no copy is needed.
    """
    y = x.permute(target)
    if out is None and y.is_contiguous():
        return y
    if out is None:
        out = torch.empty(y.shape, dtype=x.dtype, device=x.device)
    order = source_order
    if order is None or not x.permute(order).is_contiguous():
        order = memory_order(x)
    k = _rotation(order, target) if order is not None else None
    if k is None:
        out.copy_(y)
        return out
    src = x.permute(order)
    n, a = src.shape[0], math.prod(src.shape[1 : k + 1])
    src2, out2 = src.reshape(n, a, -1), out.view(n, -1, a)
    for i in range(n):
        out2[i].copy_(src2[i].t())
    return out


def _bmm_view(x: torch.Tensor, dim: int, length: int) -> Optional[torch.Tensor]:
    """
    The lines of x (N, C, *S) along `dim` as a (B, L, C) view that ``bmm`` reads without a
    copy (every line a matrix with one unit stride; one stride for the batch), or None.
    """
    others = [d for d in range(2, x.dim()) if d != dim]
    y = x.permute([0] + others + [dim, 1])
    try:
        y = y.view(-1, length, x.shape[1])
    except RuntimeError:  # the batch dims do not merge
        return None
    (_, s1, s2), (_, n1, n2) = y.stride(), y.shape
    if (s2 == 1 and s1 >= n2) or (s1 == 1 and s2 >= n1):
        return y
    return None


class Lines:
    """
    The lines along spatial axis `axis` of tensors (N, *, *S) laid out in memory order
    `source_order` (all tensors given to one instance should share it; others are still
    handled correctly, only slower).

    Packed lines are handed out as (B, L, C) batched-matrix views whose rows are the positions on
    the line, B = N * prod(S) / L ordered (N, other axes in order). A channel-major layout is
    stored (B, C, L) and handed out transposed (a BLAS transpose flag, no copy).

    :meth:`pack` returns a strided view where ``bmm`` can read one (see :func:`_bmm_view`);
    otherwise it copies into :attr:`order`, which is also the layout of :meth:`gather`'s result:

    * ``free``: channels-last source, last axis: the tensor itself is (B, L, C) (any batch),
      results accumulate in place;
    * other axes of a channels-last source: (B, L, C), a copy of runs of C values;
    * the axis is innermost in memory (NC* source, last axis): (B, C, L), a copy that moves
      contiguous runs of L values;
    * a rotation of the memory order (first axis of NC*): one 2D transpose per sample;
    * otherwise (middle axis of an NC* clip): (B, L, C), a general permuted copy.
    """

    def __init__(self, positions, axis: int, source_order: Optional[List[int]]):
        self.positions = tuple(positions)  # (N, *S)
        self.dim = 2 + axis
        self.length = positions[1 + axis]
        self.batch = math.prod(self.positions) // self.length
        others = [d for d in range(2, len(positions) + 1) if d != self.dim]
        position_major = [0] + others + [self.dim, 1]
        channel_major = [0] + others + [1, self.dim]
        known = source_order is not None
        self.free = known and source_order == position_major
        innermost = known and source_order[-1] == self.dim
        channels_last = known and source_order[-1] == 1
        rotation = known and _rotation(source_order, channel_major) is not None
        if not channels_last and (innermost or rotation):
            self.order = channel_major
        else:
            self.order = position_major
        self.source_order = source_order
        self.channel_major = self.order[-1] == self.dim

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, *S) -> (B, L, C) packed lines: a view of x where ``bmm`` can read one."""
        view = _bmm_view(x, self.dim, self.length)
        if view is not None:
            return view
        packed = copy_permuted(x, self.order, source_order=self.source_order)
        c = x.shape[1]
        if self.channel_major:
            return packed.view(-1, c, self.length).transpose(1, 2)
        return packed.view(-1, self.length, c)

    def unpack(self, lines: torch.Tensor) -> torch.Tensor:
        """Packed (B, L, C) lines in this layout -> a (N, C, *S) view of them."""
        stored = lines.transpose(1, 2) if self.channel_major else lines
        sizes = {0: self.positions[0], 1: lines.shape[-1]}
        sizes.update({2 + a: s for a, s in enumerate(self.positions[1:])})
        memory = stored.view([sizes[d] for d in self.order])
        return memory.permute([self.order.index(d) for d in range(len(self.order))])

    # -- per-position scalars (N, *S) <-> (B, L, 1) -------------------------------------------
    def pack_scalars(self, p: torch.Tensor) -> torch.Tensor:
        """(N, *S) -> (B, L, 1), broadcastable against per-line (B, L, L) tensors."""
        return p.movedim(self.dim - 1, -1).reshape(-1, self.length, 1)

    def unpack_scalars(self, t: torch.Tensor) -> torch.Tensor:
        """(B, L) -> (N, *S)."""
        others = [s for i, s in enumerate(self.positions) if i != self.dim - 1]
        return t.reshape(*others, self.length).movedim(-1, self.dim - 1)

    # -- products along the lines -----------------------------------------------------------
    @staticmethod
    def pair(a: torch.Tensor, b: torch.Tensor, dtype) -> torch.Tensor:
        """(B, L, L'): dot products <a[b, l], b[b, l']> between packed lines, in `dtype`."""
        return torch.bmm(a, b.transpose(1, 2)).to(dtype)

    def gather(
        self,
        weights: torch.Tensor,
        x: torch.Tensor,
        out: Optional[torch.Tensor] = None,
        beta: float = 0.0,
    ) -> torch.Tensor:
        """
        ``sum_l' weights[b, l, l'] x[b, l', :]`` for packed lines x (B, L, C), as packed lines in
        this layout; added into `out` (packed lines of this layout, scaled by `beta` first) if
        given.
        """
        weights = weights.to(x.dtype)
        if self.channel_major:  # stored (B, C, L) = x^T (B, C, L') @ weights^T
            if out is None:
                return torch.bmm(x.transpose(1, 2), weights.transpose(1, 2)).transpose(1, 2)
            out.transpose(1, 2).baddbmm_(x.transpose(1, 2), weights.transpose(1, 2), beta=beta)
            return out
        if out is None:
            return torch.bmm(weights, x)
        return out.baddbmm_(weights, x, beta=beta)


def all_lines(x: torch.Tensor) -> List[Lines]:
    """The lines of every spatial axis of tensors laid out like x (N, C, *S)."""
    positions = (x.shape[0],) + tuple(x.shape[2:])
    order = memory_order(x)
    return [Lines(positions, axis, order) for axis in range(x.dim() - 2)]


class LineSum:
    """
    ``dest = sum over axes of lines.gather(weights, x)``, written into `dest` (N, C, *S), laid
    out like the tensors the lines were made for. An axis whose layout is free accumulates in
    place (``baddbmm_`` on a view of dest), so callers :meth:`add` those last (see
    :func:`accumulation_order`); the others are copied or added through a (transposing) copy.
    """

    def __init__(self, dest: torch.Tensor):
        self.dest = dest
        self.order = memory_order(dest)
        if self.order is None:
            raise ValueError(
                f"LineSum: dest of shape {tuple(dest.shape)} and strides {dest.stride()} is "
                "neither NC* nor channels-last (create it with torch.empty_like(..., "
                "memory_format=common_memory_format(x)))"
            )
        self.written = False

    def add(self, lines: Lines, weights: torch.Tensor, x: torch.Tensor) -> None:
        if lines.free and self.order == lines.order:
            lines.gather(weights, x, out=lines.pack(self.dest), beta=1.0 if self.written else 0.0)
        else:
            result = lines.unpack(lines.gather(weights, x))
            if not self.written:
                copy_permuted(
                    result, self.order, out=self.dest.permute(self.order), source_order=lines.order
                )
            elif _rotation(lines.order, self.order) is not None:
                inverse = [self.order.index(d) for d in range(len(self.order))]
                moved = copy_permuted(result, self.order, source_order=lines.order)
                self.dest.add_(moved.permute(inverse))
            else:
                self.dest.add_(result)
        self.written = True


def accumulation_order(lines: List[Lines]) -> List[int]:
    """Axis indices, free ones last (they accumulate in place into a LineSum)."""
    return sorted(range(len(lines)), key=lambda i: lines[i].free)
