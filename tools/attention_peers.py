"""
Reference formulations of 2D criss-cross attention that the benchmark
(tools/benchmark_attention.py) and the tests measure :func:`ccnet.layers.criss_cross_attention`
against, and the GEMM floor of the op. Benchmark code, not part of the library.

All take query, key (N, Cq, H, W) and value (N, C, H, W) and return (N, C, H, W), with the
project's convention: each position attends to its column and row, itself once (its column
entry is masked, its row entry kept); one softmax over the unscaled energies; plain autograd.

* :func:`criss_cross_straightforward`: the original public CCNet code's "straightforward"
  version: permute to contiguous per-column / per-row tensors, ``bmm``, the energies
  concatenated, one softmax. Unlike the original it builds its mask on the input's device.
* :func:`criss_cross_mmcv`: mmcv's ``CrissCrossAttention`` core
  (``mmcv/ops/cc_attention.py``): ``einsum('bchw,bciw->bwhi')`` for the column energies plus a
  -inf diagonal, ``einsum('bchw,bchj->bhwj')`` for the rows, one softmax over the
  concatenation, two ``einsum`` for the weighted sums.
* :class:`GemmFloor`: the batched products the op performs (forward, and backward with the
  recomputed energies), on pre-packed contiguous tensors, back to back: no layout copies, no
  softmax, so it is a lower bound on the time of any implementation built on ``bmm``.
"""
import torch

__all__ = ["criss_cross_straightforward", "criss_cross_mmcv", "GemmFloor"]


def criss_cross_straightforward(query, key, value):
    """query, key (N, Cq, H, W), value (N, C, H, W) -> (N, C, H, W)."""
    n, _, h, w = query.shape
    q_h = query.permute(0, 3, 1, 2).contiguous().view(n * w, -1, h).permute(0, 2, 1)
    q_w = query.permute(0, 2, 1, 3).contiguous().view(n * h, -1, w).permute(0, 2, 1)
    k_h = key.permute(0, 3, 1, 2).contiguous().view(n * w, -1, h)
    k_w = key.permute(0, 2, 1, 3).contiguous().view(n * h, -1, w)
    v_h = value.permute(0, 3, 1, 2).contiguous().view(n * w, -1, h)
    v_w = value.permute(0, 2, 1, 3).contiguous().view(n * h, -1, w)
    self_mask = torch.diag(torch.full((h,), float("-inf"), device=query.device, dtype=query.dtype))
    energy_h = (torch.bmm(q_h, k_h) + self_mask).view(n, w, h, h).permute(0, 2, 1, 3)
    energy_w = torch.bmm(q_w, k_w).view(n, h, w, w)
    attention = torch.softmax(torch.cat([energy_h, energy_w], dim=3), dim=3)
    att_h = attention[:, :, :, 0:h].permute(0, 2, 1, 3).contiguous().view(n * w, h, h)
    att_w = attention[:, :, :, h : h + w].contiguous().view(n * h, w, w)
    out_h = torch.bmm(v_h, att_h.permute(0, 2, 1)).view(n, w, -1, h).permute(0, 2, 3, 1)
    out_w = torch.bmm(v_w, att_w.permute(0, 2, 1)).view(n, h, -1, w).permute(0, 2, 1, 3)
    return out_h + out_w


def criss_cross_mmcv(query, key, value):
    """query, key (N, Cq, H, W), value (N, C, H, W) -> (N, C, H, W), as mmcv writes it."""
    h = query.shape[2]
    neg_inf_diag = torch.diag(
        torch.full((h,), float("-inf"), device=query.device, dtype=query.dtype)
    )
    energy_h = torch.einsum("bchw,bciw->bwhi", query, key) + neg_inf_diag
    energy_h = energy_h.transpose(1, 2)
    energy_w = torch.einsum("bchw,bchj->bhwj", query, key)
    attn = torch.softmax(torch.cat([energy_h, energy_w], dim=-1), dim=-1)  # (N, H, W, H+W)
    out = torch.einsum("bciw,bhwi->bchw", value, attn[..., :h])
    out = out + torch.einsum("bchj,bhwj->bchw", value, attn[..., h:])
    return out


class GemmFloor:
    """
    The ``bmm`` calls of criss-cross attention, on contiguous pre-packed operands.

    ``GemmFloor(query, key, value)`` packs once (outside any timing) the per-axis lines
    (B, L, Cq) / (B, L, C), weights (B, L, L) and an upstream gradient (B, L, C); the value-side
    operands in `value_dtype` (as the op under autocast), the query side in query's. Calling
    :meth:`forward` runs, per axis, the energies ``q k^T`` and the weighted sum ``w v``;
    :meth:`forward_backward` adds, per axis, the recomputed energies, ``w^T g`` (d value),
    ``g v^T`` (d weights), ``e k`` (d query) and ``e^T q`` (d key). Products write into
    preallocated outputs, so no allocation is timed. :meth:`output` is the forward's result
    (N, C, H, W) from the packed weighted sums (for the agreement check, not timed).
    """

    def __init__(self, query, key, value, grad=None, value_dtype=None):
        n, cq, h, w = query.shape
        value_dtype = value_dtype or value.dtype
        c = value.shape[1]
        self.shape = (n, c, h, w)
        with torch.no_grad():
            # The true weights, so that output() equals the op (column: itself kept; row:
            # itself dropped, as in the op).
            energy_h = torch.einsum("bchw,bciw->bwhi", query, key)  # (N, W, H, H')
            energy_w = torch.einsum("bchw,bchj->bhwj", query, key)  # (N, H, W, W')
            energy_w = energy_w - torch.diag(
                torch.full((w,), float("inf"), dtype=query.dtype, device=query.device)
            )
            joint = torch.cat([energy_h.transpose(1, 2), energy_w], dim=-1)
            attn = torch.softmax(joint, dim=-1)
            weights = [
                attn[..., :h].transpose(1, 2).reshape(n * w, h, h).contiguous(),
                attn[..., h:].reshape(n * h, w, w).contiguous(),
            ]
            cols = lambda x: x.permute(0, 3, 2, 1).reshape(n * w, h, -1).contiguous()  # noqa: E731
            rows = lambda x: x.permute(0, 2, 3, 1).reshape(n * h, w, -1).contiguous()  # noqa: E731
            g = torch.ones_like(value) if grad is None else grad
            self.axes = []
            for pack, wt in ((cols, weights[0]), (rows, weights[1])):
                q, k = pack(query), pack(key)
                v, gr = pack(value).to(value_dtype), pack(g).to(value_dtype)
                b, length = wt.shape[:2]
                self.axes.append(
                    {
                        "q": q, "k": k, "v": v, "g": gr, "w": wt, "w_v": wt.to(value_dtype),
                        "e_out": torch.empty(b, length, length, dtype=wt.dtype, device=wt.device),
                        "gw_out": torch.empty(b, length, length, dtype=v.dtype, device=v.device),
                        "v_out": torch.empty_like(v),
                        "q_out": torch.empty_like(q),
                    }
                )  # fmt: skip

    def forward(self):
        for a in self.axes:
            torch.bmm(a["q"], a["k"].transpose(1, 2), out=a["e_out"])  # energies
            torch.bmm(a["w_v"], a["v"], out=a["v_out"])  # weighted sum

    def forward_backward(self):
        self.forward()
        for a in self.axes:
            torch.bmm(a["q"], a["k"].transpose(1, 2), out=a["e_out"])  # energies, recomputed
            torch.bmm(a["w_v"].transpose(1, 2), a["g"], out=a["v_out"])  # d value
            torch.bmm(a["g"], a["v"].transpose(1, 2), out=a["gw_out"])  # d weights
            torch.bmm(a["w"], a["k"], out=a["q_out"])  # d query (the energies' gradient as w)
            torch.bmm(a["w"].transpose(1, 2), a["q"], out=a["q_out"])  # d key

    def output(self):
        """(N, C, H, W): the weighted sums of both axes, from the packed tensors."""
        n, c, h, w = self.shape
        cols, rows = self.axes
        out_h = (cols["w_v"] @ cols["v"]).view(n, w, h, c).permute(0, 3, 2, 1)
        out_w = (rows["w_v"] @ rows["v"]).view(n, h, w, c).permute(0, 3, 1, 2)
        return out_h + out_w
