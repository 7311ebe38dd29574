"""Throughput of the synthetic dual-pixel engine: samples per second on the CPU (and on CUDA when there is one).

    python benchmarks/bench_synthetic.py                 # ~40 s on 2 CPU cores
    python benchmarks/bench_synthetic.py --threads 1 --seconds 3

Measures (1) the batched renderer (scenes + DP PSFs + occlusion compositing + sensor effects) on sharp batches that
are already in memory, which is what a training loop pays per step when it renders on its own device, and (2) the
sources that make the sharp crops (paid by DataLoader workers). Each figure is the median of repeated timed runs
after one warm-up run (which builds the PSF bank). On a shared CPU, pause other jobs first
(``bash benchmarks/quiet.sh python benchmarks/bench_synthetic.py``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from defocusgan_hf.data import DeadLeavesSource, DualPixelRenderer, SharpImageDataset, SkimageSource, TextSource


def timed(fn, seconds: float, sync=None) -> float:
    """Median seconds per call of ``fn`` over repeated calls lasting about ``seconds`` (after one warm-up call)."""
    fn()
    if sync:
        sync()
    times, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < 2:
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def sharp_batch(batch: int, resolution: int, device) -> torch.Tensor:
    dataset = SharpImageDataset(("skimage", "dead_leaves"), resolution=resolution, length=batch, seed=0)
    return torch.stack([dataset[i]["sharp"] for i in range(batch)]).to(device)


def bench_renderer(device: str, cases, seconds: float) -> None:
    renderer = DualPixelRenderer()
    sync = torch.cuda.synchronize if device == "cuda" else None
    for batch, resolution in cases:
        sharp = sharp_batch(batch, resolution, device)
        generator = torch.Generator(device).manual_seed(0)
        per_batch = timed(lambda s=sharp, g=generator: renderer(s, g), seconds, sync)
        print(
            f"  render  {device:4s} batch {batch:2d} x {resolution}²: {per_batch * 1000:8.1f} ms/batch "
            f"{batch / per_batch:8.1f} samples/s"
        )


def bench_sources(seconds: float) -> None:
    for name, source in (("skimage", SkimageSource()), ("dead_leaves", DeadLeavesSource()), ("text", TextSource())):
        for resolution in (256, 512):
            generator = torch.Generator().manual_seed(0)
            per_sample = timed(lambda s=source, r=resolution, g=generator: s.sample(r, g), seconds / 3)
            print(f"  source  {name:11s} {resolution}²: {per_sample * 1000:7.1f} ms/crop {1 / per_sample:8.1f} crops/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1), help="torch CPU threads.")
    parser.add_argument("--seconds", type=float, default=4.0, help="Timing budget per measurement, in seconds.")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, CPU threads: {torch.get_num_threads()} (of {os.cpu_count()} cores)")
    print("Renderer (sharp batch already in memory; scenes, PSFs, compositing, noise, JPEG):")
    bench_renderer("cpu", [(4, 128), (8, 256), (2, 512)], args.seconds)
    if torch.cuda.is_available():
        print(f"CUDA device: {torch.cuda.get_device_name()}")
        bench_renderer("cuda", [(4, 128), (32, 256), (16, 512)], args.seconds)
    else:
        print("  (no CUDA device)")
    print("Sharp-crop sources (paid by DataLoader workers, one crop each):")
    bench_sources(args.seconds)


if __name__ == "__main__":
    main()
