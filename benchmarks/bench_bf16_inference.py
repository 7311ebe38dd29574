#!/usr/bin/env python
"""bf16 inference on the CPU: bf16 weights against bf16 autocast against float32, whole images and in tiles.

    bash benchmarks/quiet.sh python benchmarks/bench_bf16_inference.py --threads 1 [--output bf16.json]

One process, the shipped pipeline (``--model``), channels-last, on one image (``--image``; default a DPDD GIF frame
from ``../shared/real`` cropped to ``--size``, else a seeded random image). Three ways of running it, interleaved in
every repetition (best of ``--repeats`` after a warm-up; on a shared machine interference only adds time):

- ``fp32``: float32 weights and input (the default);
- ``bf16 weights``: ``load_pipeline(..., dtype=torch.bfloat16)``: the image itself is cast to bf16 (8 mantissa
  bits) before the first convolution;
- ``bf16 autocast``: float32 weights, the convolutions under ``torch.autocast`` (``enable_autocast``, what
  ``defocusgan-deblur --dtype bfloat16`` runs); the image and the residual added to it stay float32.

For each tile setting it prints the time, the ratio to fp32 in the same run, and the output's PSNR against the
fp32 output and mean shift (8-bit levels). With ``--profile`` it also prints the convolutions' share of the time
and their number per tile (why bf16 gains little on small tiles: the lean generator runs ~560 convolutions per
tile, most on 8-32 px feature maps, where each call's fixed cost outweighs bf16's faster arithmetic).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_generator import machine_line, markdown_table, save_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IMAGE = ROOT.parent / "shared" / "real" / "dpdd_gif" / "03" / "blurred.png"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--model", default=str(ROOT / "checkpoints" / "defocusgan-synthetic"), help="Pipeline folder.")
    add("--image", default=str(DEFAULT_IMAGE), help="Image to deblur (a seeded random image if it is missing).")
    add("--size", type=int, default=504, help="Square crop of the image, pixels.")
    add(
        "--tiles",
        default="0,512,256",
        help="Comma-separated tile sizes (0: whole image); overlap 64 px (a quarter of smaller tiles).",
    )
    add("--repeats", type=int, default=3, help="Timed repetitions (after one warm-up).")
    add("--threads", type=int, default=1, help="torch.set_num_threads.")
    add("--profile", action="store_true", help="Also profile the convolutions of each way at the smallest tile.")
    add("--output", default=None, help="Also write the measurements to this JSON file.")
    return parser.parse_args(argv)


def load_input(path: str, size: int) -> np.ndarray:
    from defocusgan_hf.image_io import load_image

    if Path(path).is_file():
        array = load_image(path).array
        if min(array.shape[:2]) >= size:
            return np.ascontiguousarray(array[:size, :size])
    return np.random.default_rng(0).random((size, size, 3), dtype=np.float32)


def pipelines(model: str) -> dict:
    from defocusgan_hf.pipelines.loading import load_pipeline

    ways = {
        "fp32": load_pipeline(model),
        "bf16 weights": load_pipeline(model, dtype=torch.bfloat16),
        "bf16 autocast": load_pipeline(model).enable_autocast(torch.bfloat16),
    }
    for pipe in ways.values():
        pipe.enable_channels_last().set_progress_bar_config(disable=True)
    return ways


def overlap(tile: int | None) -> int:
    """64 px, the CLI's default, or a quarter of a smaller tile."""
    return 64 if tile is None else min(64, tile // 4)


def conv_profile(pipe, image: np.ndarray, tile: int | None) -> dict:
    from torch.profiler import profile

    with profile() as prof:
        pipe(image, tile_size=tile, tile_overlap=overlap(tile), output_type="np")
    events = [e for e in prof.key_averages() if "conv" in e.key and e.key.startswith("aten::") and e.count]
    kernels = [e for e in events if e.key in ("aten::mkldnn_convolution", "aten::_slow_conv2d_forward")]
    total = sum(e.self_cpu_time_total for e in prof.key_averages())
    conv = sum(e.self_cpu_time_total for e in kernels)
    return {"conv_calls": sum(e.count for e in kernels), "conv_share": conv / total if total else float("nan")}


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    image = load_input(args.image, args.size)
    ways = pipelines(args.model)
    tiles = [int(t) or None for t in args.tiles.split(",")]
    results = {}
    for tile in tiles:
        outputs = {
            name: pipe(image, tile_size=tile, tile_overlap=overlap(tile), output_type="np").images[0]
            for name, pipe in ways.items()
        }  # fmt: skip  (the warm-up, and the outputs compared)
        times = {name: [] for name in ways}
        for _ in range(args.repeats):
            for name, pipe in ways.items():
                started = time.perf_counter()
                pipe(image, tile_size=tile, tile_overlap=overlap(tile), output_type="np")
                times[name].append(time.perf_counter() - started)
        reference = outputs["fp32"]
        results[str(tile or "whole")] = {
            name: {
                "seconds": min(times[name]),
                "vs_fp32": min(times[name]) / min(times["fp32"]),
                "psnr_vs_fp32": float(peak_signal_noise_ratio(reference, outputs[name], data_range=1))
                if name != "fp32"
                else None,
                "shift_levels": float((outputs[name] - reference).mean() * 255),
            }
            for name in ways
        }
    if args.profile:
        smallest = min((t for t in tiles if t), default=None)
        for name, pipe in ways.items():
            results[str(smallest or "whole")][name].update(conv_profile(pipe, image, smallest))
    rows = []
    for tile, by_way in results.items():
        for name, r in by_way.items():
            psnr = "–" if r["psnr_vs_fp32"] is None else f"{r['psnr_vs_fp32']:.1f}"
            rows.append([tile, name, f"{r['seconds']:.3f}", f"{r['vs_fp32']:.2f}", psnr, f"{r['shift_levels']:+.3f}"])
    print(machine_line(args.threads))
    print(f"{args.size}² crop of {args.image if Path(args.image).is_file() else 'a seeded random image'}\n")
    headers = ["tiles", "way", "seconds", "× fp32", "PSNR vs fp32 (dB)", "mean shift (levels)"]
    print(markdown_table(headers, rows))
    payload = {"machine": machine_line(args.threads), "size": args.size, "results": results}
    save_json(args.output, payload)
    return payload


if __name__ == "__main__":
    main()
