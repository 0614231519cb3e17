"""
Lines of positions along one spatial axis, as batched matrices for ``bmm``.

Criss-cross attention is a set of small dense attentions, one per line of positions (every
column and every row of an image, plus every time line of a clip), each run as one ``bmm`` over
all the lines of an axis. How the lines of a ``(N, C, *S)`` tensor become batched matrices
decides most of the speed on CPU, where permuted copies of 512-channel features cost as much as
the products themselves:

* *native*: the axis is innermost in memory (the rows of an NCHW tensor), or innermost after
  the channels (channels-last): the lines are strided **views**, no copy; results are
  accumulated in place with ``baddbmm_``;
* *rotated*: the packed dim order is a rotation of the memory order (the columns, from NCHW
  or channels-last): the copy is one 2D transpose per sample, which PyTorch runs cache-blocked;
* otherwise (the middle axis of a 3D clip) a general permuted copy.

Dims are named by their index in ``(N, C, *S)``: 0 = batch, 1 = channels, 2 + a = spatial axis a.
"""
import math
from typing import List, Optional

import torch

__all__ = ["Lines", "LineSum", "accumulation_order", "all_lines", "common_memory_format", "copy_permuted", "memory_order"]


def memory_order(x: torch.Tensor) -> Optional[List[int]]:
    """Dims of x (N, C, *S) from outermost to innermost in memory, if x is NC*- or channels-last-dense."""
    if x.is_contiguous():
        return list(range(x.dim()))
    channels_last = [0] + list(range(2, x.dim())) + [1]
    if x.permute(channels_last).is_contiguous():
        return channels_last
    return None


def common_memory_format(x: torch.Tensor) -> torch.memory_format:
    """x's memory format if channels-last (2D/3D), else the contiguous (NC*) format."""
    if x.dim() in (4, 5) and not x.is_contiguous() and memory_order(x) is not None:
        return torch.channels_last if x.dim() == 4 else torch.channels_last_3d
    return torch.contiguous_format


def _rotation(source: List[int], target: List[int]) -> Optional[int]:
    """k such that target[1:] is source[1:] rotated left by k (0 < k), or None."""
    src, tgt = source[1:], target[1:]
    for k in range(1, len(src)):
        if src[k:] + src[:k] == tgt:
            return k
    return None


def copy_permuted(x: torch.Tensor, target: List[int], out: Optional[torch.Tensor] = None, source_order=None) -> torch.Tensor:
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


class Lines:
    """
    The lines along spatial axis `axis` of tensors (N, *, *S) laid out in memory order
    `source_order` (all tensors given to one instance must share it).

    Lines are handed out as lists of (B_i, L, C) batched-matrix views ("chunks", one per sample
    when the batch dims of a strided view cannot be merged), whose rows are the positions on
    the line; B = sum B_i = N * prod(S) / L, ordered (N, other axes in order). A channel-major
    layout is stored (B, C, L) and handed out transposed (a BLAS transpose flag, no copy).
    """

    def __init__(self, positions, axis: int, source_order: Optional[List[int]]):
        self.positions = tuple(positions)  # (N, *S)
        self.dim = 2 + axis
        self.length = positions[1 + axis]
        self.batch = math.prod(self.positions) // self.length
        others = [d for d in range(2, len(positions) + 1) if d != self.dim]
        position_major = [0] + others + [self.dim, 1]
        channel_major = [0] + others + [1, self.dim]
        self.native = source_order is not None and (
            source_order[-1] == self.dim or source_order[-2:] == [self.dim, 1]
        )
        if self.native:
            self.order = channel_major if source_order[-1] == self.dim else position_major
        elif source_order is not None and _rotation(source_order, channel_major) is not None:
            self.order = channel_major
        else:
            self.order = position_major
        self.source_order = source_order
        self.channel_major = self.order[-1] == self.dim

    def _matrices(self, y: torch.Tensor, channels: int) -> torch.Tensor:
        if self.channel_major:
            return y.view(-1, channels, self.length).transpose(1, 2)
        return y.view(-1, self.length, channels)

    def chunks(self, x: torch.Tensor) -> List[torch.Tensor]:
        """(N, C, *S) -> list of (B_i, L, C) views (native layout) or one packed copy."""
        c = x.shape[1]
        if self.native:
            y = x.permute(self.order)
            try:
                return [self._matrices(y, c)]
            except RuntimeError:  # the batch dims of a strided view do not merge across samples
                return [self._matrices(y[i], c) for i in range(y.shape[0])]
        return [self._matrices(copy_permuted(x, self.order, source_order=self.source_order), c)]

    def split(self, t: torch.Tensor, chunks: List[torch.Tensor]) -> List[torch.Tensor]:
        """Split a per-line tensor (B, ...) like `chunks`."""
        return list(t.split([c.shape[0] for c in chunks]))

    # -- per-position scalars (N, *S) <-> (B, L, 1) -------------------------------------------
    def pack_scalars(self, p: torch.Tensor) -> torch.Tensor:
        """(N, *S) -> (B, L, 1), broadcastable against per-line (B, L, L) tensors."""
        return p.movedim(self.dim - 1, -1).reshape(-1, self.length, 1)

    def unpack_scalars(self, t: torch.Tensor) -> torch.Tensor:
        """(B, L) -> (N, *S)."""
        others = [s for i, s in enumerate(self.positions) if i != self.dim - 1]
        return t.reshape(*others, self.length).movedim(-1, self.dim - 1)

    # -- products along the lines -----------------------------------------------------------
    def pair(self, a: List[torch.Tensor], b: List[torch.Tensor], dtype) -> torch.Tensor:
        """(B, L, L'): dot products <a[b, l], b[b, l']> between chunked lines."""
        out = torch.empty(self.batch, self.length, self.length, dtype=dtype, device=a[0].device)
        for x, y, o in zip(a, b, self.split(out, a)):
            if x.dtype == dtype:
                torch.bmm(x, y.transpose(1, 2), out=o)
            else:  # e.g. bfloat16 lines, float32 energies
                o.copy_(torch.bmm(x, y.transpose(1, 2)))
        return out

    def gather(self, weights: torch.Tensor, x: torch.Tensor, out: Optional[torch.Tensor] = None, beta: float = 0.0):
        """
        ``sum_l' weights[b, l, l'] x[b, l', :]`` for one chunk x (B_i, L, C), as a chunk in this
        layout; added into `out` (a chunk view, scaled by `beta` first) if given.
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

    def as_tensor(self, chunk: torch.Tensor, channels: int) -> torch.Tensor:
        """A packed single chunk (B, L, C) -> a (N, C, *S) view of it."""
        stored = chunk.transpose(1, 2) if self.channel_major else chunk
        sizes = {0: self.positions[0], 1: channels}
        sizes.update({2 + a: s for a, s in enumerate(self.positions[1:])})
        memory = stored.reshape([sizes[d] for d in self.order])
        return memory.permute([self.order.index(d) for d in range(len(self.order))])


def all_lines(x: torch.Tensor) -> List[Lines]:
    """The lines of every spatial axis of tensors laid out like x (N, C, *S)."""
    positions = (x.shape[0],) + tuple(x.shape[2:])
    order = memory_order(x)
    return [Lines(positions, axis, order) for axis in range(x.dim() - 2)]


class LineSum:
    """
    ``dest = sum over axes of lines.gather(weights, x)``, written into `dest` (N, C, *S), laid
    out like the tensors the lines were made for. Native axes accumulate in place (``baddbmm_``
    on views of dest), so callers :meth:`add` them last; the others go through one transposing
    copy each.
    """

    def __init__(self, dest: torch.Tensor):
        self.dest = dest
        self.order = memory_order(dest)
        self.written = False

    def add(self, lines: Lines, weights: torch.Tensor, x: List[torch.Tensor]) -> None:
        if lines.native:
            for w, xi, di in zip(lines.split(weights, x), x, lines.chunks(self.dest)):
                lines.gather(w, xi, out=di, beta=1.0 if self.written else 0.0)
        else:
            (xi,) = x
            result = lines.as_tensor(lines.gather(weights, xi), self.dest.shape[1])
            if not self.written:
                copy_permuted(result, self.order, out=self.dest.permute(self.order), source_order=lines.order)
            elif _rotation(lines.order, self.order) is not None:
                self.dest.add_(copy_permuted(result, self.order, source_order=lines.order).permute(
                    [self.order.index(d) for d in range(len(self.order))]))
            else:
                self.dest.add_(result)
        self.written = True


def accumulation_order(lines: List[Lines]) -> List[int]:
    """Axis indices, native ones last (they accumulate in place into a LineSum)."""
    return sorted(range(len(lines)), key=lambda i: lines[i].native)
