#!/usr/bin/env python
"""Train or evaluate any CCNet model (instance, semantic, video) with Detectron2.

Examples::

    python train_net.py --config-file configs/Quickstart/mask_rcnn_rcca_shapes.yaml
    python train_net.py --config-file CONFIG --num-gpus 8                   # one machine, 8 GPUs
    python train_net.py --config-file CONFIG --num-cpu-workers 2            # 2 CPU processes (gloo)
    python train_net.py --config-file CONFIG --resume                       # continue OUTPUT_DIR's run
    python train_net.py --config-file CONFIG --eval-only MODEL.WEIGHTS model_final.pth
"""
from ccnet.engine import AtomicCheckpointer, Trainer, launch_from_args
from ccnet.engine.cli import append_metrics, argument_parser, setup


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        checkpointer = AtomicCheckpointer(model, save_dir=cfg.OUTPUT_DIR)
        checkpoint = checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        results = Trainer.test(cfg, model)
        append_metrics(cfg.OUTPUT_DIR, checkpoint.get("iteration", -1), results)
        return results
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


if __name__ == "__main__":
    args = argument_parser().parse_args()
    print("Command Line Args:", args)
    launch_from_args(main, args)
