"""Training hooks: whether the criss-cross attention has opened."""
from typing import Dict, List

import torch
from detectron2.engine import HookBase
from torch import nn

from ..layers import CrissCrossAttention, criss_cross_blocks, criss_cross_entropy
from ..layers.projections import query_key

__all__ = ["AttentionStatsHook"]


class AttentionStatsHook(HookBase):
    """Logs, every ``period`` iterations, for every :class:`CrissCrossAttention` block NAME of
    the model (2D and 3D; in heads and backbones), to the event storage (so to ``metrics.json``
    and TensorBoard with the other scalars):

    * ``attention/NAME/gamma``: the block's residual scale (0 at the start: the block is the
      identity and its query, key and value convs get no gradient);
    * ``attention/NAME/entropy``: the mean entropy of its attention weights on that
      iteration's training batch, divided by that of uniform weights (1 = uniform over the
      criss-cross, lower = focused), averaged over the block's calls (R passes);
    * ``attention/NAME/residual``: ``||block(x) - x|| / ||x||`` on that batch, averaged over
      the calls: how much the block changes its input (0 while closed).

    Reading ``gamma`` costs nothing; the other two come from forward hooks that exist only
    during the logged iterations (one extra query/key projection and softmax per call).
    """

    def __init__(self, period: int):
        self.period = period
        self._handles: List = []
        self._stats: Dict[str, Dict[str, List[float]]] = {}

    def _blocks(self) -> Dict[str, CrissCrossAttention]:
        return criss_cross_blocks(self.trainer.model)

    def _logged(self, iteration: int) -> bool:
        return (iteration + 1) % self.period == 0 or iteration == self.trainer.max_iter - 1

    def _record(self, name: str):
        def hook(module: nn.Module, args, output: torch.Tensor) -> None:
            with torch.no_grad():
                x = args[0]
                entropy = criss_cross_entropy(*query_key(module, x)).mean()
                residual = (output - x).norm() / x.norm().clamp_min(1e-12)
            stats = self._stats.setdefault(name, {"entropy": [], "residual": []})
            stats["entropy"].append(float(entropy))
            stats["residual"].append(float(residual))

        return hook

    def attach_probes(self, blocks: Dict[str, CrissCrossAttention]) -> List:
        """Forward hooks on ``blocks`` (name -> block) that record the entropy and the relative
        change of each call; returns their handles (``handle.remove()`` detaches them)."""
        return [m.register_forward_hook(self._record(n)) for n, m in blocks.items()]

    def before_step(self):
        if self._logged(self.trainer.iter):
            self._stats = {}
            self._handles = self.attach_probes(self._blocks())

    def after_step(self):
        if not self._logged(self.trainer.iter):
            return
        for handle in self._handles:
            handle.remove()
        self._handles = []
        storage = self.trainer.storage
        for name, block in self._blocks().items():
            storage.put_scalar(f"attention/{name}/gamma", block.gamma.item(), smoothing_hint=False)
            for key, values in self._stats.get(name, {}).items():
                storage.put_scalar(f"attention/{name}/{key}", sum(values) / len(values), smoothing_hint=False)
