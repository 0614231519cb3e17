#!/usr/bin/env python
"""What the category consistent loss (CCL) does to the criss-cross attention early in training.

Trains a CCNet semantic config with CCL (default ``configs/Synthetic-LongRange/rcca_r2_ccl.yaml``)
in this process, with the Trainer's optimizer, LR schedule and data, and every ``--period``
iterations (and at iteration 0, the initialisation) measures on the current training batch:

* the L2 norm of the gradient that each loss term sends into the RCCA output (the context
  module's output, the tensor CCL acts on through its 1x1 embedding) and into ``gamma`` of the
  criss-cross attention: the segmentation loss, and the CCL variance, distance and
  regularisation terms (each with its configured weight, and the CCL ramp of
  ``MODEL.CCNET.CCL_WARMUP_ITERS``);
* ``gamma`` and the attention's normalised entropy (``ccnet.layers.criss_cross_entropy``);
* per image, in the CCL embedding: the mean distance of a pixel to its class centre and the
  mean distance between the centres of the classes present (averaged over the batch).

The gradients are measured with ``torch.autograd.grad`` on the same forward pass; the step
itself uses the summed losses, as ``train_net.py`` does. Prints one line per measurement and,
with ``--json``, writes them. Examples::

    python tools/ccl_diagnostics.py --iters 300 --json output/ccl/ccl.json
    python tools/ccl_diagnostics.py --iters 300 --json output/ccl/no_ccl.json \\
        --opts MODEL.CCNET.CCL_ALPHA 0.0 MODEL.CCNET.CCL_BETA 0.0 MODEL.CCNET.CCL_GAMMA 0.0
"""
import argparse
import os
import sys

import torch
from ccnet.engine import Trainer
from ccnet.engine.cli import build_config
from ccnet.layers import criss_cross_entropy
from ccnet.layers.projections import query_key
from ccnet.modeling.losses import category_consistent_loss
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from torch.nn import functional as F

from measure import add_json_argument, write_json

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TERMS = ("variance", "distance", "regularisation")


def argument_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", default=os.path.join(ROOT, "configs", "Synthetic-LongRange", "rcca_r2_ccl.yaml"))
    parser.add_argument("--iters", type=int, default=300, help="training iterations")
    parser.add_argument("--period", type=int, default=25, help="iterations between measurements")
    add_json_argument(parser)
    parser.add_argument("--opts", default=[], nargs=argparse.REMAINDER, help="config overrides")
    return parser


def centre_distances(embedding: torch.Tensor, labels: torch.Tensor, ignore_value: int) -> dict:
    """Per image (N, D, H, W) / (N, H, W): mean pixel-to-own-centre distance and mean distance
    between the centres of the classes present; averaged over the images (with >= 2 classes
    for the latter)."""
    intra, inter = [], []
    for features, label in zip(embedding, labels):
        features, label = features.flatten(1).t(), label.flatten()
        keep = label != ignore_value
        features, label = features[keep], label[keep]
        classes, index = torch.unique(label, return_inverse=True)
        centres = torch.stack([features[index == c].mean(0) for c in range(len(classes))])
        intra.append(torch.linalg.vector_norm(features - centres[index], dim=1).mean())
        if len(classes) > 1:
            inter.append(torch.pdist(centres).mean())
    return {
        "intra_class_distance": float(torch.stack(intra).mean()),
        "centre_distance": float(torch.stack(inter).mean()) if inter else float("nan"),
    }


def measure(model, batch) -> dict:
    """Forward the batch once; gradient norms of each term into the RCCA output and gamma."""
    head = model.sem_seg_head
    captured = {}
    handle = head.context.register_forward_hook(lambda m, i, o: captured.__setitem__("context", o))
    losses = model(batch)
    handle.remove()
    context = captured["context"]
    gamma = head.context.attention.gamma
    targets = torch.stack([b["sem_seg"] for b in batch])
    labels = F.interpolate(targets[:, None].float(), size=context.shape[-2:], mode="nearest")[:, 0].long()
    embedding = head.ccl_embedding(context)
    weights = head.ccl_loss.hyperparameters
    ramp = head._ccl_weight()
    ccl = dict(ignore_index=weights["ignore_index"], delta_v=weights["delta_v"], delta_d=weights["delta_d"])
    terms = {
        "segmentation": losses["loss_sem_seg"],
        "variance": category_consistent_loss(embedding, labels, alpha=1.0, beta=0.0, gamma=0.0, **ccl),
        "distance": category_consistent_loss(embedding, labels, alpha=0.0, beta=1.0, gamma=0.0, **ccl),
        "regularisation": category_consistent_loss(embedding, labels, alpha=0.0, beta=0.0, gamma=1.0, **ccl),
    }
    scale = {"segmentation": 1.0, "variance": weights["alpha"], "distance": weights["beta"], "regularisation": weights["gamma"]}
    row = {"gamma": gamma.item(), "ccl_ramp": ramp}
    for name, term in terms.items():
        weighted = term * scale[name] * (ramp if name != "segmentation" else 1.0)
        row[f"loss/{name}"] = term.item()
        if weighted.requires_grad and scale[name] != 0:
            to_context, to_gamma = torch.autograd.grad(weighted, [context, gamma], retain_graph=True, allow_unused=True)
        else:
            to_context = to_gamma = None
        row[f"grad_context/{name}"] = float(to_context.norm()) if to_context is not None else 0.0
        row[f"grad_gamma/{name}"] = float(to_gamma.abs().sum()) if to_gamma is not None else 0.0
    row.update(centre_distances(embedding.detach(), labels, weights["ignore_index"]))
    return row, sum(losses.values())


def main(argv=None):
    args = argument_parser().parse_args(argv)
    cfg = build_config(args.config_file, args.opts + ["SOLVER.MAX_ITER", str(args.iters)])
    if not cfg.MODEL.CCNET.CCL_ENABLED or cfg.MODEL.CONTEXT.NAME != "RCCA":
        raise SystemExit("ccl_diagnostics needs MODEL.CCNET.CCL_ENABLED True and MODEL.CONTEXT.NAME RCCA")
    torch.manual_seed(cfg.SEED)
    model = build_model(cfg)
    model.train()
    optimizer = Trainer.build_optimizer(cfg, model)
    scheduler = Trainer.build_lr_scheduler(cfg, optimizer)
    data = iter(Trainer.build_train_loader(cfg))
    attention = model.sem_seg_head.context.attention
    inputs = []
    attention.register_forward_pre_hook(lambda m, a: inputs.append(a[0].detach()))
    rows = []
    with EventStorage(0) as storage:
        for iteration in range(args.iters):
            storage.iter = iteration
            batch = next(data)
            inputs.clear()
            if iteration % args.period == 0 or iteration == args.iters - 1:
                row, loss = measure(model, batch)
                with torch.no_grad():
                    row["entropy"] = float(torch.stack([criss_cross_entropy(*query_key(attention, x)).mean() for x in inputs]).mean())
                row["iteration"] = iteration
                rows.append(row)
                print(
                    f"it {iteration:5d} gamma {row['gamma']:+.4f} entropy {row['entropy']:.3f} "
                    + " ".join(f"|d{n[:3]}/dctx| {row[f'grad_context/{n}']:.2e}" for n in ("segmentation",) + TERMS)
                    + " "
                    + " ".join(f"|d{n[:3]}/dgamma| {row[f'grad_gamma/{n}']:.2e}" for n in ("segmentation",) + TERMS)
                    + f" intra {row['intra_class_distance']:.3f} centres {row['centre_distance']:.3f}",
                    flush=True,
                )
            else:
                loss = sum(model(batch).values())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
    if args.json:
        write_json(args.json, {"config": args.config_file, "opts": args.opts, "rows": rows})
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
