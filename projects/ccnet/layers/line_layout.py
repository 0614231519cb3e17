"""
Lines of positions along one spatial axis, packed as tight batched matrices.

Criss-cross attention is a set of small dense attentions, one per line of positions (every
column and every row of an image, plus every time line of a clip). Each runs as one ``bmm`` over
all lines of an axis, which BLAS / cuBLAS only run at full speed on *packed* batches
(``(B, L, C)`` or ``(B, C, L)`` contiguous). Packing a ``(N, C, *S)`` tensor is a permuted copy;
this module makes those copies cheap: when the target dim order is a *rotation* of the source's
memory order (true for the first and last spatial axes, from NCHW or channels-last), the copy is
one 2D transpose per sample, which PyTorch runs cache-blocked (several times faster on CPU than a
general permuted copy).

Dims are named by their index in ``(N, C, *S)``: 0 = batch, 1 = channels, 2 + a = spatial axis a.
"""
import math
from typing import List, Optional

import torch

__all__ = ["Lines", "all_lines", "ChannelsLastSum", "copy_permuted", "memory_order"]


def channels_last_order(ndim: int) -> List[int]:
    """The dim order (N, *S, C) of a channels-last tensor (N, C, *S) with `ndim` dims."""
    return [0] + list(range(2, ndim)) + [1]


def memory_order(x: torch.Tensor) -> Optional[List[int]]:
    """Dims of x (N, C, *S) from outermost to innermost in memory, if x is NC*- or channels-last-dense."""
    if x.is_contiguous():
        return list(range(x.dim()))
    channels_last = channels_last_order(x.dim())
    if x.permute(channels_last).is_contiguous():
        return channels_last
    return None


def _rotation(source: List[int], target: List[int]) -> Optional[int]:
    """k such that target[1:] is source[1:] rotated left by k (0 < k), or None."""
    src, tgt = source[1:], target[1:]
    for k in range(1, len(src)):
        if src[k:] + src[:k] == tgt:
            return k
    return None


def _transpose_copy(dst: torch.Tensor, src: torch.Tensor, k: int) -> None:
    """
    dst = src with the dims after the batch rotated left by k, for src and dst contiguous:
    one 2D transpose per sample (PyTorch's cache-blocked transpose copy).
    """
    n = src.shape[0]
    a = math.prod(src.shape[1 : k + 1])
    b = math.prod(src.shape[k + 1 :])
    src2, dst2 = src.reshape(n, a, b), dst.view(n, b, a)
    for i in range(n):
        dst2[i].copy_(src2[i].t())


def copy_permuted(x: torch.Tensor, target: List[int], out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """
    ``x.permute(target).contiguous()`` (written into `out` if given, which must be contiguous
    with that shape), through :func:`_transpose_copy` when possible. A view if no copy is needed.
    """
    y = x.permute(target)
    if out is None and y.is_contiguous():
        return y
    order = memory_order(x)
    k = _rotation(order, target) if order is not None else None
    if out is None:
        out = torch.empty(y.shape, dtype=x.dtype, device=x.device)
    if k is not None:
        _transpose_copy(out, x.permute(order), k)
    else:
        out.copy_(y)
    return out


class Lines:
    """
    The lines along spatial axis `axis` of tensors shaped (N, *, *S) with memory order
    `source_order` (see :func:`memory_order`).

    Packed layout: ``(B, L, C)`` ("positions-major") or ``(B, C, L)`` ("channels-major"), with L the
    axis length and B = N * prod(S) / L; the one chosen is free or a rotation of the source order
    when possible. All products are written in terms of position-major *views*, the
    channel-major ones being their transposes (a BLAS transpose flag, no copy).
    """

    def __init__(self, positions, axis: int, source_order: Optional[List[int]]):
        self.positions = tuple(positions)  # (N, *S)
        self.dim = 2 + axis
        self.length = positions[1 + axis]
        spatial = len(positions) - 1
        others = [d for d in range(2, 2 + spatial) if d != self.dim]
        position_major = [0] + others + [self.dim, 1]
        channel_major = [0] + others + [1, self.dim]
        self.order = position_major
        if source_order is not None:
            for candidate in (position_major, channel_major):  # free layouts first
                if candidate == source_order:
                    self.order = candidate
                    break
            else:
                for candidate in (position_major, channel_major):
                    if _rotation(source_order, candidate) is not None:
                        self.order = candidate
                        break
        self.channel_major = self.order[-1] == self.dim
        # Results in this layout add into a ChannelsLastSum in place (see add_gather).
        self.is_channels_last = self.order == channels_last_order(len(self.order))

    # -- tensors (N, C, *S) <-> packed lines --------------------------------------------------
    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, *S) -> contiguous lines, returned as a (B, L, C) view (transposed if channel-major)."""
        packed = copy_permuted(x, self.order)
        c = x.shape[1]
        if self.channel_major:
            return packed.reshape(-1, c, self.length).transpose(1, 2)
        return packed.reshape(-1, self.length, c)

    def to_memory(self, lines: torch.Tensor) -> torch.Tensor:
        """A packed (B, L, C) view -> the contiguous tensor it views, dims in ``self.order``."""
        packed = lines.transpose(1, 2) if self.channel_major else lines
        sizes = {0: self.positions[0], 1: lines.shape[-1]}
        sizes.update({2 + a: s for a, s in enumerate(self.positions[1:])})
        return packed.reshape([sizes[d] for d in self.order])

    # -- per-position scalars (N, *S) <-> (B, L, 1) ------------------------------------------
    def pack_scalars(self, p: torch.Tensor) -> torch.Tensor:
        """(N, *S) -> (B, L, 1), broadcastable against per-line (B, L, L) tensors."""
        return p.movedim(self.dim - 1, -1).reshape(-1, self.length, 1)

    def unpack_scalars(self, t: torch.Tensor) -> torch.Tensor:
        """(B, L) -> (N, *S)."""
        others = [s for i, s in enumerate(self.positions) if i != self.dim - 1]
        return t.reshape(*others, self.length).movedim(-1, self.dim - 1)

    # -- products along the lines -----------------------------------------------------------
    @staticmethod
    def pair(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(B, L, L'): dot products <a[b, l], b[b, l']> of packed (B, L, C) views."""
        return torch.bmm(a, b.transpose(1, 2))

    def gather(self, weights: torch.Tensor, x: torch.Tensor, out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """
        ``sum_l' weights[b, l, l'] x[b, l', :]`` for a packed (B, L, C) view x, returned as a packed
        view in this layout; added into `out` (a packed view of this layout) if given.
        """
        if self.channel_major:  # (B, C, L) = x^T (B, C, L') @ weights^T
            if out is None:
                return torch.bmm(x.transpose(1, 2), weights.transpose(1, 2)).transpose(1, 2)
            out.transpose(1, 2).baddbmm_(x.transpose(1, 2), weights.transpose(1, 2))
            return out
        if out is None:
            return torch.bmm(weights, x)
        return out.baddbmm_(weights, x)


def all_lines(x: torch.Tensor) -> List[Lines]:
    """The lines of every spatial axis of x (N, C, *S), laid out for x's memory order."""
    positions = (x.shape[0],) + tuple(x.shape[2:])
    order = memory_order(x)
    return [Lines(positions, axis, order) for axis in range(x.dim() - 2)]


class ChannelsLastSum:
    """
    Sums per-axis results, each a packed (B, L, C) view in its axis' layout, into one
    channels-last tensor (N, *S, C); a result already in that layout is accumulated in place
    by ``baddbmm`` (see :meth:`add_gather`), the others through a transposing copy.
    """

    def __init__(self, positions, channels: int):
        self.positions = tuple(positions)
        self.channels = channels
        self.order = channels_last_order(len(positions) + 1)
        self.total = None  # (N, *S, C) contiguous

    def _as_nc(self, lines: Lines, packed: torch.Tensor) -> torch.Tensor:
        """The packed result as a (N, C, *S) view."""
        memory = lines.to_memory(packed)
        inverse = [lines.order.index(d) for d in range(len(lines.order))]
        return memory.permute(inverse)

    def add(self, lines: Lines, packed: torch.Tensor) -> None:
        view = self._as_nc(lines, packed)
        if self.total is None:  # a fresh result: may become the total without a copy
            self.total = copy_permuted(view, self.order)
        elif _rotation(lines.order, self.order) is not None:
            self.total.add_(copy_permuted(view, self.order))
        else:
            self.total.add_(view.permute(self.order))

    def add_gather(self, lines: Lines, weights: torch.Tensor, x: torch.Tensor) -> None:
        """Adds ``lines.gather(weights, x)``, in place when the layouts allow."""
        if self.total is not None and lines.is_channels_last:
            lines.gather(weights, x, out=self.total.view(-1, lines.length, self.channels))
        else:
            self.add(lines, lines.gather(weights, x))

    def write_to(self, out: torch.Tensor) -> torch.Tensor:
        """Copies the sum into `out` (N, C, *S), whatever its memory format (in place)."""
        order = memory_order(out)
        total_nc = self.total.permute([self.order.index(d) for d in range(len(self.order))])
        if order is None:
            out.copy_(total_nc)
        else:
            copy_permuted(total_nc, order, out=out.permute(order))
        return out
