#!/usr/bin/env python
"""Latency, throughput and peak memory of the DefocusGAN generator, and the same against a plain U-Net.

    bash benchmarks/quiet.sh python benchmarks/bench_generator.py [--threads 2] [--output gen.json]

Configurations: 512×512 and DPDD's 1680×1120; whole image and tiled (512²: tiles of 256 with 32 px overlap;
1680×1120: tiles of 512 with 64 px overlap, the pipeline's default); fp32 and bf16 weights. Each configuration
runs in a fresh subprocess (``OMP_WAIT_POLICY=PASSIVE``, see ``run_worker``) so that its peak resident memory
(``ru_maxrss``) is its own; "Δ peak" is that peak minus the process's resident memory just before the first
forward pass (model and input already in memory).
Latency is the best of the timed runs (interference on a shared machine only adds time): 3 after a warm-up
run at 512², one (``--large_repeats``) without warm-up at 1680×1120; through ``DefocusDeblurPipeline`` (numpy
in, numpy out). Absolute times on a shared machine are noisy: the ratios printed at the end are measured side by
side in the same run.

The equal-parameter baseline (``benchmarks/plain_unet.py``) and our generator are compared at 512×512, fp32,
by parameters, GMACs (``torch.utils.flop_counter``; MAC = FLOP / 2, convolutions and matmuls only), time (direct
model calls, the two models alternating 5 times in one process after a warm-up, best of each) and peak memory
(one call each in its own process).

This file also holds the small harness the other benchmarks import (subprocess workers, tables, machine line).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
SIZES = {"512": (512, 512), "dpdd": (1120, 1680)}
DTYPES = ("fp32", "bf16")
TILES = {"512": (256, 32), "dpdd": (512, 64)}

# ----------------------------------------------------------------------------------------------------------------
# Harness shared by the benchmarks
# ----------------------------------------------------------------------------------------------------------------


def rss_mb() -> float:
    """Current resident memory of this process in MB (``VmRSS``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_calls(fn: Callable[[], object], warmup: int, repeats: int) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def paired_times(fns: dict, warmup: int, repeats: int, sync=None, progress=None) -> dict[str, list[float]]:
    """Seconds per call of each of ``fns``, interleaved: every repetition runs each once, the order reversed on
    every other repetition (so drifts in machine load hit them alike). ``sync``: called before and after each timed
    call (``torch.cuda.synchronize`` on a GPU); ``progress``: a tqdm bar updated once per repetition."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times = {name: [] for name in names}
    for rep in range(repeats):
        for name in names if rep % 2 == 0 else names[::-1]:
            if sync is not None:
                sync()
            start = time.perf_counter()
            fns[name]()
            if sync is not None:
                sync()
            times[name].append(time.perf_counter() - start)
        if progress is not None:
            progress.update(1)
    return times


def run_worker(script: Path, config: dict, threads: int) -> dict:
    """Run ``script --worker CONFIG`` in a fresh Python process and return the JSON it prints last."""
    # Passive OpenMP waiting: with active spinning (the default), a 2-thread run on 2 cores slows down 10x as soon
    # as any other process takes a core (measured here: 13 s instead of 1.1 s for one 512² generator pass).
    env = {"OMP_WAIT_POLICY": "PASSIVE", **os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    command = [sys.executable, str(script), "--worker", json.dumps(config), "--threads", str(threads)]
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"Worker {config} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def worker_result(times: Sequence[float], rss_before: float, **extra) -> None:
    """Print a worker's measurements as one JSON line (the last line of its stdout)."""
    print(json.dumps({"times": list(times), "rss_before_mb": rss_before, "peak_rss_mb": peak_rss_mb(), **extra}))


def gmacs(model: torch.nn.Module, *inputs: torch.Tensor) -> float:
    """Multiply-accumulates of one forward pass, in billions (FLOP counter: convolutions and matmuls)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(*inputs)
    return counter.get_total_flops() / 2 / 1e9


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|",
    ]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def machine_line(threads: int) -> str:
    policy = os.environ.get("OMP_WAIT_POLICY", "PASSIVE")
    return (
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC · {cpu_model()} · {os.cpu_count()} cores · torch "
        f"{torch.__version__} · {threads} threads (OMP_WAIT_POLICY={policy}) · load average {load_average()}"
    )


def delta_peak(result: dict) -> float:
    """A worker's peak RSS minus its RSS just before the measured calls, in MB."""
    return result["peak_rss_mb"] - result["rss_before_mb"]


LATENCY_HEADERS = ["size", "mode", "dtype", "latency (s)", "MP/s", "peak RSS (MB)", "Δ peak (MB)"]


def latency_row(r: dict) -> list[str]:
    """One row of the latency table (:data:`LATENCY_HEADERS`) for a worker result."""
    seconds = best(r["times"])
    return [
        f"{r['width']}×{r['height']}",
        f"tiled {r['tile']}/{r['overlap']}" if r["tile"] else "whole",
        r["dtype"],
        f"{seconds:.3f}",
        f"{r['height'] * r['width'] / 1e6 / seconds:.2f}",
        f"{r['peak_rss_mb']:.0f}",
        f"{delta_peak(r):.0f}",
    ]


def ratios(a: dict, b: dict) -> list[str]:
    """``[time a / time b, Δ peak a / Δ peak b]`` of two worker results, formatted."""
    return [f"{best(a['times']) / best(b['times']):.2f}", f"{delta_peak(a) / delta_peak(b):.2f}"]


def best(values: Sequence[float]) -> float:
    """The fastest of the timed runs: on a shared machine, interference only ever adds time."""
    return min(values)


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in every worker (default 2).")
    parser.add_argument("--output", default=None, help="Also write the measurements to this JSON file.")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)


def parse_benchmark_args(description: str, worker_fn, extra_args=None) -> argparse.Namespace | None:
    """The command line every benchmark shares. In a worker process (``--worker CONFIG``, started by
    :func:`run_worker`), run ``worker_fn(config, threads)`` and return ``None``; in the parent, return the
    arguments with torch's thread count set. ``extra_args(parser)`` adds a script's own flags."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    if extra_args is not None:
        extra_args(parser)
    args = parser.parse_args()
    if args.worker:
        worker_fn(json.loads(args.worker), args.threads)
        return None
    torch.set_num_threads(args.threads)
    return args


def save_json(path: str | None, payload: dict) -> None:
    """Print the load average at the end (interference shows there), and write ``payload`` to ``path``."""
    print(f"\nLoad average at the end: {load_average()} (1, 5, 15 min).")
    if path:
        Path(path).write_text(json.dumps(payload, indent=2) + "\n")
        print(f"\nWrote {path}")


# ----------------------------------------------------------------------------------------------------------------
# Generator worker
# ----------------------------------------------------------------------------------------------------------------


def build_model(name: str) -> torch.nn.Module:
    """``generator`` (the default, "lean"), ``generator_<preset>`` (GENERATOR_PRESETS) or ``plain_unet``."""
    from defocusgan_hf.models import DefocusDeblurNet

    if name == "generator":
        return DefocusDeblurNet().eval()
    if name.startswith("generator_"):
        return DefocusDeblurNet.from_preset(name.removeprefix("generator_")).eval()
    sys.path.insert(0, str(HERE))
    from plain_unet import matched_plain_unet

    return matched_plain_unet(sum(p.numel() for p in DefocusDeblurNet().parameters())).eval()


def interleaved_worker(config: dict) -> None:
    """Time our generator and the plain U-Net alternately in one process (A, B, A, B, ...): whatever else runs
    on the machine slows both alike, so their ratio is steadier than that of two separate processes."""
    models = {name: build_model(name) for name in COMPARED}
    x = torch.rand(1, 3, config["height"], config["width"])
    times = {name: [] for name in models}
    with torch.inference_mode():
        for model in models.values():
            model(x)  # warm-up
        for _ in range(config["repeats"]):
            for name, model in models.items():
                start = time.perf_counter()
                model(x)
                times[name].append(time.perf_counter() - start)
    worker_result([], rss_mb(), interleaved=times)


def worker(config: dict, threads: int) -> None:
    import numpy as np

    torch.set_num_threads(threads)
    if config["path"] == "interleaved":
        interleaved_worker(config)
        return
    dtype = torch.bfloat16 if config["dtype"] == "bf16" else torch.float32
    model = build_model(config["net"]).to(dtype)
    height, width = config["height"], config["width"]
    if config["path"] == "pipeline":
        from defocusgan_hf.pipelines import DefocusDeblurPipeline

        pipe = DefocusDeblurPipeline(deblur_net=model)
        pipe.set_progress_bar_config(disable=True)
        image = np.random.default_rng(0).random((height, width, 3), dtype=np.float32)

        def fn():
            return pipe(image, tile_size=config["tile"], tile_overlap=config["overlap"], output_type="np")
    else:
        from defocusgan_hf.pipelines.tiling import tiled_apply

        image = torch.rand(1, 3, height, width)

        def forward(x):
            out = model(x.to(dtype))
            return out.sample if hasattr(out, "sample") else out

        def fn():
            with torch.inference_mode():
                return tiled_apply(forward, (image,), 3, config["tile"], config["overlap"])

    rss_before = rss_mb()
    times = time_calls(fn, config["warmup"], config["repeats"])
    worker_result(times, rss_before)


# ----------------------------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------------------------


# The presets of models/deblur_net.py: ours ("lean", the default), the first layout ("full_res": the same channels
# from full resolution), 16 channels at full resolution, and the released code's 64 channels throughout ("paper").
COMPARED = ("generator", "generator_full_res", "generator_full_res16", "generator_paper", "plain_unet")


def configurations(large_repeats: int = 1, compare_only: bool = False) -> list[dict]:
    configs = []
    for size, (height, width) in {} if compare_only else SIZES.items():
        # 1680×1120 runs take seconds each: no warm-up (first-call overhead is small beside them).
        warmup, repeats = (1, 3) if size == "512" else (0, large_repeats)
        for dtype in ("fp32", "bf16"):
            for tiled in (False, True):
                tile, overlap = TILES[size] if tiled else (None, 0)
                configs.append(
                    dict(
                        net="generator",
                        path="pipeline",
                        size=size,
                        height=height,
                        width=width,
                        tile=tile,
                        overlap=overlap,
                        dtype=dtype,
                        warmup=warmup,
                        repeats=repeats,
                    )
                )
    # Generator vs plain U-Net: peak memory from one run each in its own process, latency interleaved.
    direct = dict(size="512", height=512, width=512, tile=None, overlap=0, dtype="fp32")
    configs += [dict(net=net, path="direct", warmup=0, repeats=1, **direct) for net in COMPARED]
    configs.append(dict(net="pair", path="interleaved", warmup=1, repeats=5, **direct))
    return configs


def generator_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--large_repeats", type=int, default=1, help="Timed runs at 1680×1120 (default 1: < 3 min).")
    parser.add_argument(
        "--compare_only", action="store_true", help="Only the 512×512 generator vs plain U-Net comparison."
    )


def main() -> None:
    args = parse_benchmark_args(__doc__, worker, generator_args)
    if args is None:
        return
    print(f"Generator benchmark · {machine_line(args.threads)}\n")
    results = []
    for config in configurations(args.large_repeats, args.compare_only):
        measured = run_worker(Path(__file__), config, args.threads)
        results.append({**config, **measured})
        if "interleaved" in measured:
            timing = ", ".join(f"{name} {best(t):.3f} s" for name, t in measured["interleaved"].items())
        else:
            timing = f"{best(measured['times']):.3f} s"
        print(
            f"  measured {config['net']} {config['path']} {config['size']} {config['dtype']} "
            f"tile={config['tile']}: {timing}"
        )

    def find(**keys):
        return next(r for r in results if all(r[k] == v for k, v in keys.items()))

    def pipeline_run(size: str, dtype: str, tiled: bool) -> dict:
        return next(
            r
            for r in results
            if r["path"] == "pipeline" and r["size"] == size and r["dtype"] == dtype and bool(r["tile"]) == tiled
        )

    rows = [latency_row(r) for r in results if r["path"] == "pipeline"]
    if rows:
        print()
        print(markdown_table(LATENCY_HEADERS, rows))

    # Side-by-side ratios.
    ratio_rows = []
    for size in [] if args.compare_only else SIZES:
        pairs = [
            (f"tiled / whole, {size}, {d}", pipeline_run(size, d, True), pipeline_run(size, d, False)) for d in DTYPES
        ]
        pairs += [
            (
                f"bf16 / fp32, {size}, {'tiled' if t else 'whole'}",
                pipeline_run(size, "bf16", t),
                pipeline_run(size, "fp32", t),
            )
            for t in (False, True)
        ]
        ratio_rows += [[name, *ratios(a, b)] for name, a, b in pairs]
    if ratio_rows:
        print()
        print(markdown_table(["ratio (same run)", "latency", "Δ peak memory"], ratio_rows))

    # Our generator vs the plain U-Net of equal parameter count, 512×512 fp32.
    x = torch.rand(1, 3, 512, 512)
    built = {name: build_model(name) for name in COMPARED}
    interleaved = find(path="interleaved")["interleaved"]
    comparison = {
        name: {
            "params": sum(p.numel() for p in model.parameters()),
            "gmacs": gmacs(model, x),
            "seconds": best(interleaved[name]),
            "delta_peak_mb": delta_peak(find(path="direct", net=name)),
        }
        for name, model in built.items()
    }
    dpdd_gmacs = gmacs(built["generator"], torch.rand(1, 3, 1120, 1680))
    unet = built["plain_unet"]
    labels = {
        "generator": "DefocusGAN generator (default, preset lean)",
        "generator_full_res": "preset full_res (first layout: stem_stride=1, DGB levels 4/3/2)",
        "generator_full_res16": "preset full_res16 (16 channels at full resolution)",
        "generator_paper": "preset paper (64 channels throughout, released code)",
        "plain_unet": f"plain U-Net (base {unet.encoders[0][0].out_channels}, depth 4)",
    }
    keys = ("params", "gmacs", "seconds", "delta_peak_mb")
    formats = ("{:.2f}", "{:.1f}", "{:.3f}", "{:.0f}")
    rows = [
        [labels[name], *(f.format(c[k] / (1e6 if k == "params" else 1)) for k, f in zip(keys, formats))]
        for name, c in comparison.items()
    ]
    u = comparison["plain_unet"]
    for name in COMPARED[:-1]:
        rows.append([f"ratio {name} / U-Net", *(f"{comparison[name][k] / u[k]:.2f}" for k in keys)])
    print()
    print(
        markdown_table(
            ["512×512, fp32, direct call", "params (M)", "GMACs", "latency (s, interleaved)", "Δ peak (MB)"], rows
        )
    )
    print(f"\nGenerator GMACs at 1680×1120: {dpdd_gmacs:.1f}")
    save_json(
        args.output,
        {
            "machine": machine_line(args.threads),
            "results": results,
            "comparison": comparison,
            "generator_gmacs_dpdd": dpdd_gmacs,
        },
    )


if __name__ == "__main__":
    main()
