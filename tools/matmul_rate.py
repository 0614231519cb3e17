#!/usr/bin/env python
"""This machine's one-thread float32 matrix-multiply rate, to scale CPU timings between machines.

Multiplies two 2048x2048 float32 matrices with ``torch.mm`` on one thread (``--repeats``
times after a warm-up) and prints the best rate in GFLOP/s, counting 2 * 2048^3 flops per
product (a multiply and an add). The best of several runs is the least disturbed by other
processes on a shared machine; ``--json`` also gives the median.

    python tools/matmul_rate.py            # e.g. "matmul 2048x2048 float32, 1 thread: 35.2 GFLOP/s"
    python tools/matmul_rate.py --json     # {"gflops_best": ..., "gflops_median": ..., ...}

A time measured on one machine scales to another roughly by the ratio of their rates (for
work dominated by float32 convolutions and matrix products, such as ``make demo``).
"""
import argparse
import json
import statistics
import time

import torch


def matmul_rate(size: int = 2048, repeats: int = 5) -> dict:
    """Time ``repeats`` one-thread (size x size) @ (size x size) float32 products.

    Returns:
        dict with ``gflops_best``, ``gflops_median`` (2*size^3 flops per product / seconds / 1e9),
        ``seconds`` (each product's time), ``size`` and ``threads`` (1).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        generator = torch.Generator().manual_seed(0)
        a = torch.rand(size, size, generator=generator)
        b = torch.rand(size, size, generator=generator)
        out = torch.empty(size, size)
        torch.mm(a, b, out=out)  # warm-up: page in the buffers, pick the kernel
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b, out=out)
            seconds.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    flops = 2.0 * size**3
    return {
        "gflops_best": flops / min(seconds) / 1e9,
        "gflops_median": flops / statistics.median(seconds) / 1e9,
        "seconds": seconds,
        "size": size,
        "threads": 1,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=2048, help="matrix side (default 2048)")
    parser.add_argument("--repeats", type=int, default=5, help="timed products after one warm-up")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    result = matmul_rate(args.size, args.repeats)
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"matmul {args.size}x{args.size} float32, 1 thread: {result['gflops_best']:.1f} GFLOP/s "
            f"(best of {args.repeats}; median {result['gflops_median']:.1f})"
        )


if __name__ == "__main__":
    main()
