#!/usr/bin/env python
"""Latency, throughput and peak memory of the stage-1 defocus-map net (``DualPixelDefocusNet``).

    bash benchmarks/quiet.sh python benchmarks/bench_defocus_net.py [--threads 2] [--output defocus.json]

Two DP views in, a signed CoC map out, at 512×512 and 1680×1120; whole and tiled (the same tiles as the
generator benchmark, through ``defocusgan_hf.pipelines.tiling.tiled_apply`` as the pipeline does);
fp32 and bf16 weights.
One fresh subprocess per configuration (honest peak RSS); best of the timed runs (as in the generator
benchmark); ratios measured side by side at the end. See ``bench_generator.py`` for the harness and the
meaning of the columns.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_generator import (  # noqa: E402
    DTYPES,
    LATENCY_HEADERS,
    SIZES,
    TILES,
    best,
    gmacs,
    latency_row,
    machine_line,
    markdown_table,
    parse_benchmark_args,
    ratios,
    rss_mb,
    run_worker,
    save_json,
    time_calls,
    worker_result,
)


def worker(config: dict, threads: int) -> None:
    from defocusgan_hf.models import DualPixelDefocusNet
    from defocusgan_hf.pipelines.tiling import tiled_apply

    torch.set_num_threads(threads)
    dtype = torch.bfloat16 if config["dtype"] == "bf16" else torch.float32
    net = DualPixelDefocusNet().eval().to(dtype)
    left, right = torch.rand(2, 1, 3, config["height"], config["width"])

    def fn():
        with torch.inference_mode():
            return tiled_apply(
                lambda a, b: net(a.to(dtype), b.to(dtype)).defocus_map,
                (left, right),
                1,
                config["tile"],
                config["overlap"],
            )

    rss_before = rss_mb()
    worker_result(time_calls(fn, config["warmup"], config["repeats"]), rss_before)


def main() -> None:
    args = parse_benchmark_args(__doc__, worker)
    if args is None:
        return
    print(f"Defocus-map net benchmark · {machine_line(args.threads)}\n")
    results = []
    for size, (height, width) in SIZES.items():
        for dtype in DTYPES:
            for tiled in (False, True):
                tile, overlap = TILES[size] if tiled else (None, 0)
                config = dict(
                    size=size,
                    height=height,
                    width=width,
                    tile=tile,
                    overlap=overlap,
                    dtype=dtype,
                    warmup=1 if size == "512" else 0,
                    repeats=3 if size == "512" else 1,
                )
                measured = run_worker(Path(__file__), config, args.threads)
                results.append({**config, **measured})
                print(f"  measured {size} {dtype} tile={tile}: {best(measured['times']):.3f} s", flush=True)

    def find(size, dtype, tiled):
        return next(r for r in results if r["size"] == size and r["dtype"] == dtype and bool(r["tile"]) == tiled)

    print()
    print(markdown_table(LATENCY_HEADERS, [latency_row(r) for r in results]))
    ratio_rows = []
    for size in SIZES:
        pairs = [(f"tiled / whole, {size}, {d}", find(size, d, True), find(size, d, False)) for d in DTYPES]
        pairs += [
            (f"bf16 / fp32, {size}, {'tiled' if t else 'whole'}", find(size, "bf16", t), find(size, "fp32", t))
            for t in (False, True)
        ]
        ratio_rows += [[name, *ratios(a, b)] for name, a, b in pairs]
    print()
    print(markdown_table(["ratio (same run)", "latency", "Δ peak memory"], ratio_rows))
    from defocusgan_hf.models import DualPixelDefocusNet

    net = DualPixelDefocusNet().eval()
    params = sum(p.numel() for p in net.parameters())
    macs = {size: gmacs(net, *torch.rand(2, 1, 3, h, w)) for size, (h, w) in SIZES.items()}
    print(
        f"\nDualPixelDefocusNet: {params / 1e6:.2f} M parameters; GMACs 512×512 {macs['512']:.1f}, "
        f"1680×1120 {macs['dpdd']:.1f}"
    )
    save_json(args.output, {"machine": machine_line(args.threads), "results": results, "params": params, "gmacs": macs})


if __name__ == "__main__":
    main()
