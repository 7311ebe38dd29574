#!/usr/bin/env python
"""Cost of the reblur operator (Eq. 4) per stage-1 training step: forward + backward, with the learnable kernel.

    bash benchmarks/quiet.sh python benchmarks/bench_reblur.py [--threads 2] [--output reblur.json]

One step = ``LearnableBlurKernel()()`` -> ``reblur(sharp, coc, kernels)`` -> L1 to the blurred image -> backward
(gradients for the map and the kernel). Its cost grows with the number of CoC layers the map reaches (one FFT
convolution per integer radius and side of focus), so maps reaching 25 px (26 layers per side) and 5 px (6) are
both measured. bf16 inputs are computed in fp32 inside ``fft_convolve`` (FFTs need it). The stage-1 net's own
forward + backward at the same batch is measured beside it, so the reblur's share of a step is a same-run ratio.
The stage-1 loss with the search term (``defocus_map_loss(search_weight=0.2)``, net phase: the kernel fixed) is timed
with the bank's layers shared between Eq. 2 and the search (as the package does) and computed separately by each.
One fresh subprocess per configuration (honest peak RSS); see ``bench_generator.py`` for the harness.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_generator import (  # noqa: E402
    best,
    machine_line,
    markdown_table,
    parse_benchmark_args,
    rss_mb,
    run_worker,
    save_json,
    time_calls,
    worker_result,
)

BATCH = 4


def signed_map(batch: int, size: int, max_coc: float) -> torch.Tensor:
    """A smooth ``(B, 1, H, W)`` map sweeping [-max_coc, max_coc] px, so both sides and all layers are used."""
    y, x = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    coc = max_coc * torch.sin(2 * math.pi * (0.75 * x + 0.5 * y))
    return coc.expand(batch, 1, size, size).clone()


def worker(config: dict, threads: int) -> None:
    from defocusgan_hf.models import DualPixelDefocusNet, LearnableBlurKernel, reblur

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    dtype = torch.bfloat16 if config["dtype"] == "bf16" else torch.float32
    size = config["size"]
    sharp, blurred = torch.rand(2, BATCH, 3, size, size, dtype=dtype)
    if config["op"].startswith("search"):
        from defocusgan_hf.models.reblur import search_coc
        from defocusgan_hf.training.losses import defocus_map_loss, reblur_loss

        kernels = LearnableBlurKernel()().detach()
        coc = signed_map(BATCH, size, config["max_coc"]).to(dtype).requires_grad_(True)

        def step():
            coc.grad = None
            if config["op"] == "search_shared":
                loss, _ = defocus_map_loss(sharp, blurred, coc, kernels, smoothness_weight=0.0, search_weight=0.2)
            else:  # each term convolves the image with the bank itself
                target = search_coc(sharp, blurred, kernels)
                loss = reblur_loss(sharp, blurred, coc, kernels) + 0.2 * (coc.abs() - target).abs().mean()
            loss.backward()
    elif config["op"] == "reblur":
        kernel = LearnableBlurKernel()
        coc = signed_map(BATCH, size, config["max_coc"]).to(dtype).requires_grad_(True)

        def step():
            kernel.zero_grad(set_to_none=True)
            coc.grad = None
            loss = (reblur(sharp, coc, kernel()) - blurred).abs().float().mean()
            loss.backward()
    else:
        net = DualPixelDefocusNet().to(dtype)
        left, right = torch.rand(2, BATCH, 3, size, size, dtype=dtype)

        def step():
            net.zero_grad(set_to_none=True)
            net(left, right).defocus_map.float().abs().mean().backward()

    rss_before = rss_mb()
    worker_result(time_calls(step, config["warmup"], config["repeats"]), rss_before)


CONFIGS = [
    dict(op="reblur", size=256, max_coc=25.0, dtype="fp32"),
    dict(op="reblur", size=256, max_coc=5.0, dtype="fp32"),
    dict(op="reblur", size=256, max_coc=25.0, dtype="bf16"),
    dict(op="net", size=256, max_coc=None, dtype="fp32"),
    dict(op="reblur", size=512, max_coc=25.0, dtype="fp32"),
    dict(op="reblur", size=512, max_coc=5.0, dtype="fp32"),
    dict(op="net", size=512, max_coc=None, dtype="fp32"),
    dict(op="search_separate", size=256, max_coc=25.0, dtype="fp32"),
    dict(op="search_shared", size=256, max_coc=25.0, dtype="fp32"),
]


def main() -> None:
    args = parse_benchmark_args(__doc__, worker)
    if args is None:
        return
    print(f"Reblur benchmark (per training step, batch {BATCH}) · {machine_line(args.threads)}\n")
    results = []
    for config in CONFIGS:
        # A 4×512² step takes 4-20 s here: one run without warm-up keeps the benchmark under 3 minutes.
        config = (
            {**config, "warmup": 1, "repeats": 3} if config["size"] == 256 else {**config, "warmup": 0, "repeats": 1}
        )
        measured = run_worker(Path(__file__), config, args.threads)
        results.append({**config, **measured})
        print(
            f"  measured {config['op']} {config['size']} max_coc={config['max_coc']} {config['dtype']}: "
            f"{best(measured['times']):.3f} s",
            flush=True,
        )

    def find(**keys):
        return next(r for r in results if all(r[k] == v for k, v in keys.items()))

    def delta(r):
        return r["peak_rss_mb"] - r["rss_before_mb"]

    rows = []
    for r in results:
        what = (
            f"reblur, \\|CoC\\| ≤ {r['max_coc']:g} px ({int(r['max_coc']) + 1} layers × 2 sides)"
            if r["op"] == "reblur"
            else "stage-1 net"
            if r["op"] == "net"
            else f"Eq. 2 + search term, layers {r['op'].split('_')[1]}"
        )
        seconds = best(r["times"])
        rows.append(
            [
                what,
                f"{BATCH}×{r['size']}²",
                r["dtype"],
                f"{seconds:.3f}",
                f"{BATCH * r['size'] ** 2 / 1e6 / seconds:.2f}",
                f"{r['peak_rss_mb']:.0f}",
                f"{delta(r):.0f}",
            ]
        )
    print()
    print(
        markdown_table(
            ["forward + backward", "batch", "dtype", "time (s)", "MP/s", "peak RSS (MB)", "Δ peak (MB)"], rows
        )
    )
    ratios = []
    for size in (256, 512):
        full, small, net = (
            find(op="reblur", size=size, max_coc=25.0, dtype="fp32"),
            find(op="reblur", size=size, max_coc=5.0),
            find(op="net", size=size),
        )
        ratios.append(
            [
                f"reblur 25 px / reblur 5 px, {size}²",
                f"{best(full['times']) / best(small['times']):.2f}",
                f"{delta(full) / delta(small):.2f}",
            ]
        )
        ratios.append(
            [
                f"reblur 25 px / stage-1 net, {size}²",
                f"{best(full['times']) / best(net['times']):.2f}",
                f"{delta(full) / delta(net):.2f}",
            ]
        )
    b16, f32 = (
        find(op="reblur", size=256, max_coc=25.0, dtype="bf16"),
        find(op="reblur", size=256, max_coc=25.0, dtype="fp32"),
    )
    ratios.append(
        [
            "bf16 / fp32 reblur, 256²",
            f"{best(b16['times']) / best(f32['times']):.2f}",
            f"{delta(b16) / delta(f32):.2f}",
        ]
    )
    r512, r256 = find(op="reblur", size=512, max_coc=25.0), f32
    ratios.append(
        [
            "reblur 512² / 256² (4× pixels)",
            f"{best(r512['times']) / best(r256['times']):.2f}",
            f"{delta(r512) / delta(r256):.2f}",
        ]
    )
    shared, separate = find(op="search_shared"), find(op="search_separate")
    ratios.append(
        [
            "search term: layers shared / separate, 256²",
            f"{best(shared['times']) / best(separate['times']):.2f}",
            f"{delta(shared) / delta(separate):.2f}",
        ]
    )
    print()
    print(markdown_table(["ratio (same run)", "time", "Δ peak memory"], ratios))
    save_json(args.output, {"machine": machine_line(args.threads), "batch": BATCH, "results": results})


if __name__ == "__main__":
    main()
