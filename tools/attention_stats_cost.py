#!/usr/bin/env python
"""What the attention logging (:class:`ccnet.engine.hooks.AttentionStatsHook`) costs in training.

The hook reads ``gamma`` (free) and, on the logged iterations only (1 in ``--period``, the
writers' period, 20), adds forward hooks to every criss-cross block that compute the attention
entropy and the block's relative change. This tool times one training step (forward + backward
of the model a config builds, on a random batch of ``SOLVER.IMS_PER_BATCH`` images) without and
with those forward hooks, interleaved (tools/measure.py), and reports the extra time of a
logged step and the amortised overhead per step: (logged - plain) / plain / period. ::

    python tools/attention_stats_cost.py                       # long-range R=2, 128x128
    python tools/attention_stats_cost.py --config-file configs/Synthetic-Temporal/ccnet_t5.yaml --json out.json
"""
import argparse
import os

import ccnet.config  # noqa: F401  (first: Detectron2 made to work with today's libraries; the project registered)
import torch
from ccnet.engine.cli import build_config
from ccnet.engine.hooks import AttentionStatsHook
from ccnet.inference import is_clip_model
from ccnet.layers import criss_cross_blocks
from detectron2.modeling import build_model

from measure import add_json_argument, add_repeats_argument, interleaved_medians, load_average, matmul_rate, write_json

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def random_batch(cfg, size: int, generator: torch.Generator) -> list:
    """``SOLVER.IMS_PER_BATCH`` records: a (3, size, size) uint8 image (a (T, 3, size, size)
    clip of ``INPUT.CLIP.LENGTH`` frames for a video model) and a (size, size) label map of the head's classes."""
    length = cfg.INPUT.CLIP.LENGTH if is_clip_model(cfg) else 1
    shape = (3, size, size) if length == 1 else (length, 3, size, size)
    return [
        {
            "image": torch.randint(0, 256, shape, generator=generator, dtype=torch.uint8),
            "sem_seg": torch.randint(0, cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES, (size, size), generator=generator),
        }
        for _ in range(cfg.SOLVER.IMS_PER_BATCH)
    ]


def measure(cfg, size: int, period: int, repeats: int) -> dict:
    torch.manual_seed(0)
    model = build_model(cfg).train()
    batch = random_batch(cfg, size, torch.Generator().manual_seed(0))
    blocks = criss_cross_blocks(model)
    if not blocks:
        raise ValueError(f"{cfg.MODEL.META_ARCHITECTURE} of this config has no criss-cross block: nothing is logged")
    stats = AttentionStatsHook(period)

    def step():
        model.zero_grad(set_to_none=True)
        sum(model(batch).values()).backward()

    def logged_step():
        handles = stats.attach_probes(blocks)
        try:
            step()
        finally:
            for h in handles:
                h.remove()

    seconds = interleaved_medians({"step": step, "logged step": logged_step}, repeats)
    extra = seconds["logged step"] / seconds["step"] - 1
    return {
        "blocks": len(blocks),
        "seconds": seconds,
        "logged_step_extra": extra,
        "period": period,
        "overhead_per_step": extra / period,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", default=os.path.join(ROOT, "configs", "Synthetic-LongRange", "rcca_r2.yaml"))
    parser.add_argument("--size", type=int, default=128, help="image side (default 128)")
    parser.add_argument("--period", type=int, default=20, help="logging period (default 20, Detectron2's writers')")
    add_repeats_argument(parser, default=9)
    add_json_argument(parser)
    args = parser.parse_args(argv)
    cfg = build_config(args.config_file, ["MODEL.DEVICE", "cpu"])
    result = {"config": os.path.relpath(args.config_file, ROOT), "threads": torch.get_num_threads(), "size": args.size}
    result.update(measure(cfg, args.size, args.period, args.repeats))
    result.update(matmul=matmul_rate(), load_average=load_average())  # right after the timing
    s = result["seconds"]
    print(f"| config | blocks | step (ms) | logged step (ms) | logged step extra | per step, period {args.period} |")
    print("|---|---|---|---|---|---|")
    print(
        f"| {result['config']} | {result['blocks']} | {1e3 * s['step']:.1f} | {1e3 * s['logged step']:.1f} "
        f"| {100 * result['logged_step_extra']:+.1f}% | {100 * result['overhead_per_step']:+.2f}% |"
    )
    print(f"threads {result['threads']}; load average {result['load_average']}")
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
