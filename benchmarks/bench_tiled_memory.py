#!/usr/bin/env python
"""Peak memory of tiled generator inference as photos grow: 1, 6, 12 and 24 megapixels (3:2 photos).

    bash benchmarks/quiet.sh python benchmarks/bench_tiled_memory.py [--threads 2] [--megapixels 1 6 12 24]
        [--input uint8|float32]

Each size runs once in a fresh subprocess through ``DefocusDeblurPipeline`` (tiles of 512 px with 64 px overlap,
the pipeline's default), and reports the process's peak resident memory. A whole-image run at 1 MP is measured
beside them for contrast. ``--input uint8`` (default) is what ``defocusgan-deblur`` does with an 8-bit photo:
uint8 numpy in, uint8 out (``output_bit_depth=8``), each tile converted to float on its own; ``float32`` gives
float32 in [0, 1] in and out. The full-size input and output must be held in memory ("image MB" below: one
``H×W×3`` array of the input's dtype): they grow with the photo whatever the tiling, so the table also gives the
peak minus the resident memory before the call ("Δ peak") and Δ peak in units of one image buffer. What tiling
bounds is the network's working memory, which is the same for every size.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_generator import (  # noqa: E402
    machine_line,
    markdown_table,
    parse_benchmark_args,
    rss_mb,
    run_worker,
    save_json,
    time_calls,
    worker_result,
)

TILE, OVERLAP = 512, 64


def photo_size(megapixels: float) -> tuple[int, int]:
    """``(height, width)`` of a 3:2 photo of about ``megapixels`` (sides multiples of 8)."""
    width = round(math.sqrt(megapixels * 1e6 * 1.5) / 8) * 8
    return round(width / 1.5 / 8) * 8, width


def worker(config: dict, threads: int) -> None:
    import numpy as np

    from defocusgan_hf.models import DefocusDeblurNet
    from defocusgan_hf.pipelines import DefocusDeblurPipeline
    from defocusgan_hf.pipelines.tiling import count_tiles

    torch.set_num_threads(threads)
    pipe = DefocusDeblurPipeline(deblur_net=DefocusDeblurNet().eval())
    pipe.set_progress_bar_config(disable=True)
    height, width = config["height"], config["width"]
    rng, shape = np.random.default_rng(0), (height, width, 3)
    if config["input"] == "uint8":  # made as uint8: a float temporary would set the process's peak
        image, bits = rng.integers(0, 256, shape, dtype=np.uint8), 8
    else:
        image, bits = rng.random(shape, dtype=np.float32), None
    rss_before = rss_mb()
    tiling = {"tile_size": config["tile"], "tile_overlap": OVERLAP}
    times = time_calls(lambda: pipe(image, **tiling, output_type="np", output_bit_depth=bits), 0, 1)
    tiles = count_tiles(height, width, config["tile"], OVERLAP) if config["tile"] else 1
    worker_result(times, rss_before, tiles=tiles)


def size_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--megapixels", type=float, nargs="*", default=[1, 6, 12, 24], help="Photo sizes to measure.")
    parser.add_argument("--whole_megapixels", type=float, nargs="*", default=[1], help="Untiled runs for contrast.")
    parser.add_argument(
        "--input", default="uint8", choices=("uint8", "float32"), help="Image dtype in and out (default: uint8)."
    )


def main() -> None:
    args = parse_benchmark_args(__doc__, worker, size_args)
    if args is None:
        return
    print(
        f"Tiled-inference memory benchmark (tiles {TILE}/{OVERLAP}, fp32 net, {args.input} image) · "
        f"{machine_line(args.threads)}\n"
    )
    configs = [(mp, None) for mp in args.whole_megapixels] + [(mp, TILE) for mp in args.megapixels]
    results = []
    for megapixels, tile in configs:
        height, width = photo_size(megapixels)
        config = {"height": height, "width": width, "tile": tile, "input": args.input}
        measured = run_worker(Path(__file__), config, args.threads)
        results.append({"megapixels": megapixels, "height": height, "width": width, "tile": tile, **measured})
        print(
            f"  measured {width}×{height} tile={tile}: peak {measured['peak_rss_mb']:.0f} MB, "
            f"{measured['times'][0]:.1f} s",
            flush=True,
        )
    rows = []
    sample_bytes = 1 if args.input == "uint8" else 4
    for r in results:
        image_mb = r["height"] * r["width"] * 3 * sample_bytes / 2**20
        delta = r["peak_rss_mb"] - r["rss_before_mb"]
        seconds = r["times"][0]
        rows.append(
            [
                f"{r['width']}×{r['height']} ({r['height'] * r['width'] / 1e6:.1f} MP)",
                f"tiled, {r['tiles']} tiles" if r["tile"] else "whole",
                f"{seconds:.1f}",
                f"{r['height'] * r['width'] / 1e6 / seconds:.2f}",
                f"{image_mb:.0f}",
                f"{r['peak_rss_mb']:.0f}",
                f"{delta:.0f}",
                f"{delta / image_mb:.1f}",
            ]
        )
    print()
    print(
        markdown_table(
            ["photo", "mode", "time (s)", "MP/s", "image MB", "peak RSS (MB)", "Δ peak (MB)", "Δ peak / image"], rows
        )
    )
    tiled = [r for r in results if r["tile"]]
    if len(tiled) > 1:
        first, last = tiled[0], tiled[-1]
        growth = (last["peak_rss_mb"] - first["peak_rss_mb"]) / (last["megapixels"] - first["megapixels"])
        print(
            f"\nTiled peak RSS grows by {growth:.0f} MB per extra megapixel ({first['megapixels']:g} -> "
            f"{last['megapixels']:g} MP); one {args.input} RGB megapixel is {3 * sample_bytes * 1e6 / 2**20:.1f} MB."
        )
    whole = [r for r in results if not r["tile"]]
    for w in whole:
        t = next((r for r in tiled if r["megapixels"] == w["megapixels"]), None)
        if t:
            print(
                f"At {w['megapixels']:g} MP, tiled / whole: peak RSS {t['peak_rss_mb'] / w['peak_rss_mb']:.2f}, "
                f"Δ peak {(t['peak_rss_mb'] - t['rss_before_mb']) / (w['peak_rss_mb'] - w['rss_before_mb']):.2f}, "
                f"time {t['times'][0] / w['times'][0]:.2f}"
            )
    payload = {"machine": machine_line(args.threads), "tile": TILE, "overlap": OVERLAP, "input": args.input}
    save_json(args.output, {**payload, "results": results})


if __name__ == "__main__":
    main()
