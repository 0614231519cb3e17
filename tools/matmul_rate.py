#!/usr/bin/env python
"""This machine's one-thread float32 matrix-multiply rate, to scale CPU timings between machines.

Multiplies two 2048x2048 float32 matrices with ``torch.mm`` on one thread (``--repeats``
times after a warm-up) and prints the best rate in GFLOP/s, counting 2 * 2048^3 FLOPs per
product (a multiply and an add; ``measure.matmul_rate``). The best of several runs is the least
disturbed by other processes on a shared machine; ``--json FILE`` also writes the median and
every product's time.

    python tools/matmul_rate.py            # e.g. "matmul 2048x2048 float32, 1 thread: 35.2 GFLOP/s"
    python tools/matmul_rate.py --json output/matmul_rate.json

A time measured on one machine scales to another roughly by the ratio of their rates (for
work dominated by float32 convolutions and matrix products, such as ``make demo``).
"""
import argparse
import sys

from measure import add_json_argument, add_repeats_argument, matmul_rate, write_json


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=2048, help="matrix side (default 2048)")
    add_repeats_argument(parser, default=5)
    add_json_argument(parser)
    return parser


def main(argv=None) -> dict:
    args = argument_parser().parse_args(argv)
    result = matmul_rate(args.size, args.repeats)
    print(
        f"matmul {args.size}x{args.size} float32, 1 thread: {result['gflops_best']:.1f} GFLOP/s "
        f"(best of {args.repeats}; median {result['gflops_median']:.1f})"
    )
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
