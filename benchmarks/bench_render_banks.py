"""The DP renderer with several PSF banks per sample (a field-varying rendering: the centre PSF and four cat eyes):
the banks sharing each sub-layer's forward FFT (``render_layers_with_banks``, today) against each bank rendered on
its own with the planned renderer and with the former per-sub-layer one, in one process, calls interleaved.

    OMP_NUM_THREADS=1 python benchmarks/bench_render_banks.py --repeats 10 \
        --output benchmarks/results/render_shared_banks_1thread.json

Each path gets its own generator with the same seed, so the k-th call of every path renders the same scenes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_generator import paired_times  # noqa: E402
from bench_train_throughput import RENDERERS, Sources, bank_by_bank, patched_renderers  # noqa: E402

from defocusgan_hf.data import DualPixelConfig, DualPixelRenderer  # noqa: E402
from defocusgan_hf.data import render as render_module  # noqa: E402

# path -> (render_layers, render_layers_with_banks) that DualPixelRenderer uses
PATHS = {
    "per_sublayer": RENDERERS["old"],
    "planned": (render_module.render_layers, bank_by_bank(render_module.render_layers)),
    "shared": RENDERERS["new"],
}


def render_call(renderer: DualPixelRenderer, sharp: torch.Tensor, generator: torch.Generator, path: str):
    """One call of ``renderer`` with the ``path``'s way of rendering several banks."""
    with patched_renderers(PATHS[path]):
        return renderer(sharp, generator)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    varied = DualPixelConfig.named("varied")
    configs = {
        "varied": varied,
        "varied, every sample field-varying": dataclasses.replace(varied, field_varying_prob=1.0),
    }
    sharp = Sources(varied, args.resolution, args.batch)()
    paths = tuple(PATHS)
    results = {}
    for label, config in configs.items():
        renderer = DualPixelRenderer(config)
        generators = {path: torch.Generator().manual_seed(0) for path in paths}
        fns = {
            path: (lambda path=path, r=renderer, g=generators[path]: render_call(r, sharp, g, path)) for path in paths
        }
        times = paired_times(fns, args.warmup, args.repeats)
        ms = {path: 1000 * statistics.mean(t) for path, t in times.items()}
        results[label] = {
            "mean_ms_per_batch": ms,
            "shared_speedup_over_planned": ms["planned"] / ms["shared"],
            "shared_speedup_over_per_sublayer": ms["per_sublayer"] / ms["shared"],
        }
        print(
            f"{label}: "
            + ", ".join(f"{p} {ms[p]:.1f} ms" for p in paths)
            + f"; shared is {ms['planned'] / ms['shared']:.2f}x planned, {ms['per_sublayer'] / ms['shared']:.2f}x"
            " per sub-layer",
            flush=True,
        )
    meta = {"batch": args.batch, "resolution": args.resolution, "threads": args.threads, "repeats": args.repeats}
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps({"settings": meta, "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
