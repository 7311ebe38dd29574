#!/usr/bin/env python
"""Our generator against the plain U-Net of equal parameter count (``plain_unet.py``) in each memory format and
precision the CLI and the app can use: fp32 contiguous, fp32 channels-last (what they run on a CPU), bf16 autocast
channels-last (``--dtype bfloat16``). Direct model calls on one 512² image, every variant in turn in one process,
best of the timed rounds after a warm-up round; the ratio generator / U-Net per variant.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_generator_formats.py --threads 2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_generator import build_model, machine_line  # noqa: E402

NETS = ("generator", "plain_unet")
VARIANTS = {  # label -> (memory format, bf16 autocast)
    "fp32": (torch.contiguous_format, False),
    "fp32 channels-last": (torch.channels_last, False),
    "bf16 autocast channels-last": (torch.channels_last, True),
}


def measure(size: int, rounds: int) -> dict[str, dict[str, float]]:
    """Best seconds per (variant, net), the variants and nets taking turns within each round."""
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    models = {}
    for net in NETS:
        model = build_model(net)
        for label, (memory_format, _) in VARIANTS.items():
            copy = build_model(net).to(memory_format=memory_format)
            copy.load_state_dict(model.state_dict())
            models[label, net] = copy
    times: dict[tuple[str, str], list[float]] = {key: [] for key in models}
    with torch.inference_mode():
        for round_ in range(rounds + 1):  # round 0 warms up
            for (label, net), model in models.items():
                memory_format, bf16 = VARIANTS[label]
                inputs = x.contiguous(memory_format=memory_format)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    start = time.perf_counter()
                    model(inputs)
                    seconds = time.perf_counter() - start
                if round_:
                    times[label, net].append(seconds)
    return {label: {net: min(times[label, net]) for net in NETS} for label in VARIANTS}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(machine_line(args.threads))
    best = measure(args.size, args.rounds)
    print(f"| {args.size}², best of {args.rounds} | generator (s) | plain U-Net (s) | generator / U-Net |")
    print("|---|---:|---:|---:|")
    for label, seconds in best.items():
        ratio = seconds["generator"] / seconds["plain_unet"]
        print(f"| {label} | {seconds['generator']:.3f} | {seconds['plain_unet']:.3f} | {ratio:.2f} |")
    return best


if __name__ == "__main__":
    main()
