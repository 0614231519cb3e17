"""Start training in several processes: on GPUs through Detectron2's ``launch``, or on CPUs.

Detectron2 0.6's :func:`detectron2.engine.launch` asserts CUDA and hard-codes NCCL, so it
cannot run several processes on a machine without GPUs.  :func:`launch` here adds that case
(``num_cpu_workers > 0``): N processes per machine with the gloo backend, set up like
Detectron2's own workers (global and per-machine process groups), so that
:mod:`detectron2.utils.comm`, the distributed samplers and DistributedDataParallel work as
usual (with :func:`create_ddp_model`, which also wraps CPU models).  Without
``num_cpu_workers`` it is Detectron2's ``launch``, unchanged.
"""
import logging
import os
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from detectron2.engine import launch as detectron2_launch
from detectron2.engine.defaults import create_ddp_model as detectron2_create_ddp_model
from detectron2.engine.launch import DEFAULT_TIMEOUT, _find_free_port
from detectron2.utils import comm

__all__ = ["launch", "launch_from_args", "create_ddp_model"]


def create_ddp_model(model: torch.nn.Module, **kwargs) -> torch.nn.Module:
    """Detectron2's ``create_ddp_model`` (DistributedDataParallel when there are several
    processes; ``kwargs`` go to it), which also wraps a model whose parameters are on the CPU.

    Detectron2 passes ``device_ids=[local_rank]`` unless told otherwise, which DDP rejects for
    CPU modules; for those, ``device_ids`` is left to DDP (None).
    """
    if next(model.parameters()).device.type == "cpu":
        kwargs.setdefault("device_ids", None)
    return detectron2_create_ddp_model(model, **kwargs)


def launch(
    main_func,
    num_gpus_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: str = None,
    args=(),
    num_cpu_workers: int = 0,
    timeout: timedelta = DEFAULT_TIMEOUT,
):
    """Run ``main_func(*args)`` in ``num_cpu_workers`` CPU processes per machine, or on GPUs.

    Args:
        main_func: called as ``main_func(*args)`` in every process.
        num_gpus_per_machine: GPU processes per machine (Detectron2's ``--num-gpus``); ignored
            when ``num_cpu_workers > 0``.
        num_machines, machine_rank, dist_url: as in Detectron2 (``dist_url="auto"`` picks a free
            local port on a single machine).
        num_cpu_workers: CPU processes per machine (gloo backend); 0 means use GPUs.
    """
    if num_cpu_workers <= 0:
        return detectron2_launch(
            main_func, num_gpus_per_machine, num_machines, machine_rank, dist_url, args, timeout
        )
    world_size = num_machines * num_cpu_workers
    if world_size == 1:
        return main_func(*args)
    if dist_url == "auto":
        if num_machines != 1:
            raise ValueError("--dist-url auto only works on one machine; pass tcp://HOST:PORT")
        dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
    mp.spawn(
        _cpu_worker,
        nprocs=num_cpu_workers,
        args=(main_func, world_size, num_cpu_workers, machine_rank, dist_url, args, timeout),
        daemon=False,
    )


def launch_from_args(main_func, args):
    """:func:`launch` ``main_func(args)`` as the command line (``ccnet.engine.cli.argument_parser``) asks."""
    return launch(
        main_func,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
        num_cpu_workers=args.num_cpu_workers,
    )


def _cpu_worker(local_rank, main_func, world_size, workers_per_machine, machine_rank, dist_url, args, timeout):
    global_rank = machine_rank * workers_per_machine + local_rank
    try:
        dist.init_process_group(
            backend="gloo", init_method=dist_url, world_size=world_size, rank=global_rank, timeout=timeout
        )
    except Exception as e:
        logging.getLogger(__name__).error(f"Process group URL: {dist_url}")
        raise e
    num_machines = world_size // workers_per_machine
    for machine in range(num_machines):
        ranks = list(range(machine * workers_per_machine, (machine + 1) * workers_per_machine))
        group = dist.new_group(ranks)
        if machine == machine_rank:
            comm._LOCAL_PROCESS_GROUP = group
    # Share the machine's cores between the workers instead of oversubscribing them.
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers_per_machine))
    comm.synchronize()
    try:
        main_func(*args)
    finally:
        dist.destroy_process_group()
