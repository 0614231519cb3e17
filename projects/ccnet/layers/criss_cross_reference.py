"""
The "straightforward" pure-PyTorch criss-cross attention, as the original public CCNet code
writes it: per-column and per-row ``bmm`` after permuting to contiguous tensors, the column and
row energies concatenated, one softmax; plain autograd.

It is the reference the benchmark (tools/benchmark_attention.py) measures
:func:`ccnet.layers.criss_cross_attention` against. Unlike the original it builds its mask on
the input's device, and it counts the position itself once (in the row; its column entry is
masked), like the rest of this project.
"""
import torch

__all__ = ["criss_cross_attention_straightforward"]


def criss_cross_attention_straightforward(query, key, value):
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
