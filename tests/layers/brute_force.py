"""Independent references for the attention tests: dense attention with an explicit mask."""
import itertools

import torch

# float64 code against this float64 reference: eps 2.2e-16 x |values| <= 30 x reductions of
# <= 100 terms = 7e-13 (measured <= 1.3e-14); a wrong weight moves the outputs by > 1e-3.
FLOAT64_ATOL = 1e-12


def criss_cross_mask(spatial):
    """(P, P) bool: True where positions differ in at most one coordinate (row/column/time line)."""
    coords = torch.tensor(list(itertools.product(*[range(s) for s in spatial])))  # (P, D)
    differing = (coords[:, None, :] != coords[None, :, :]).sum(-1)
    return differing <= 1


def masked_attention(query, key, value, mask):
    """softmax over masked unscaled energies, dense, computed in float64."""
    n, c = value.shape[:2]
    q, k, v = (t.double().flatten(2) for t in (query, key, value))
    energy = torch.einsum("ncp,ncj->npj", q, k)
    energy = energy.masked_fill(~mask, float("-inf"))  # every row keeps its own position
    attention = torch.softmax(energy, dim=-1)
    return torch.einsum("npj,ncj->ncp", attention, v).reshape(n, c, *value.shape[2:]), attention


def criss_cross_brute_force(query, key, value):
    """Returns (output (N, C, *S), dense weights (N, P, P)) in float64."""
    return masked_attention(query, key, value, criss_cross_mask(query.shape[2:]))


def dense_brute_force(query, key, value):
    p = query.shape[2:].numel()
    return masked_attention(query, key, value, torch.ones(p, p, dtype=torch.bool))[0]
