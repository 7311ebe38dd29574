"""Benchmark of the Gradio app on the CPU: start-up time and memory, and the time to deblur a 1680×1120 photo.

1. Start-up, cold (a fresh Python process): it imports app.py, loads the model the app would load
   (``load_pipeline()``: the shipped checkpoint when present, else the default configuration untrained), builds the
   page, starts the server and fetches the page and its config once, as a first visitor's browser does; wall time
   from process start to that first page, its parts, and resident memory are printed.
2. Deblurring: the default full-size ``DefocusDeblurNet()`` with the app's tile settings, on a 1680×1120 JPEG (the
   size of DPDD photos), for each thread count: the pipeline alone and the whole request (read the upload,
   deblur, write the full-resolution PNG and the two slider previews). One warm-up run, then the median of
   ``--repeats`` runs. The target on Spaces' free CPU hardware (2 vCPUs) is under 10 s.
3. The defocus-map request (DP tab) on a pair of that size, with the default ``DualPixelDefocusNet()``.
4. With ``--self_ensemble``: the pipeline with the x8 self-ensemble (the app's checkbox) against without, timed
   alternately in the same run, and their ratio.
5. With ``--bfloat16``: the pipeline under bf16 autocast (float32 weights; ``defocusgan-deblur --dtype bfloat16``)
   against float32, the app's default, in the app's tiles, timed alternately, and their ratio.

Run it with nothing else on the CPU (``benchmarks/quiet.sh`` pauses a background training run):
    bash benchmarks/quiet.sh python benchmarks/bench_app.py
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as app.py sets it, before torch is imported
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_generator's helpers
READY = "BENCH_APP_READY "


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch thread counts to time.")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per setting (after one warm-up).")
    parser.add_argument("--width", type=int, default=1680, help="photo width in pixels.")
    parser.add_argument("--height", type=int, default=1120, help="photo height in pixels.")
    parser.add_argument(
        "--tile_sizes",
        type=int,
        nargs="*",
        default=[],
        help="also time the pipeline with these tile sizes (last thread count).",
    )
    parser.add_argument(
        "--self_ensemble", action="store_true", help="also time the x8 self-ensemble against the plain pipeline."
    )
    parser.add_argument(
        "--bfloat16",
        action="store_true",
        help="also time the pipeline under bf16 autocast (--dtype bfloat16 of the CLI) against float32.",
    )
    parser.add_argument("--skip_startup", action="store_true", help="do not measure the start-up.")
    parser.add_argument("--skip_dual_pixel", action="store_true", help="do not time the defocus-map request.")
    parser.add_argument("--skip_deblur", action="store_true", help="only measure the start-up.")
    parser.add_argument("--startup_child", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident memory of this process in MiB."""
    current = 0.0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            current = int(line.split()[1]) / 1024
    return current, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def startup_child() -> None:
    """Runs in a fresh process: start the app as `python app.py` does (``app.startup_demo()``), fetch the page once
    as a browser's first visit would, report, stop."""
    start = time.perf_counter()
    sys.path.insert(0, str(ROOT))
    import app

    imported = time.perf_counter()
    threads = app.configure_threads()
    pipe, source = app.load_pipeline()
    loaded = time.perf_counter()
    demo = app.build_demo(pipe, source)
    built = time.perf_counter()
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **app.LAUNCH_KWARGS)
    ready = time.perf_counter()
    import httpx

    page = httpx.get(url, timeout=120)
    page.raise_for_status()
    config = httpx.get(url.rstrip("/") + "/config", timeout=120)
    config.raise_for_status()
    served = time.perf_counter()
    current, peak = rss_mb()
    report = {
        "imports_s": imported - start,
        "model_s": loaded - imported,
        "page_s": built - loaded,
        "launch_s": ready - built,
        "first_page_s": served - ready,
        "rss_mib": current,
        "peak_rss_mib": peak,
        "threads": threads,
        "model": source or "untrained default configuration",
        "parameters": sum(p.numel() for p in pipe.deblur_net.parameters())
        + sum(p.numel() for p in (pipe.defocus_net.parameters() if pipe.defocus_net is not None else [])),
    }
    print(READY + json.dumps(report), flush=True)
    demo.close()


def measure_startup() -> None:
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False")
    start = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, __file__, "--startup_child"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output, lines, wall = [], [], None
    for line in child.stdout:  # the wall time stops at the "ready" line (page served), before the child shuts down
        output.append(line)
        if line.startswith(READY):
            wall = time.perf_counter() - start
            lines.append(line)
    if child.wait(timeout=600) != 0 or not lines:
        raise RuntimeError("the app did not start:\n" + "".join(output))
    report = json.loads(lines[0][len(READY) :])
    print("== App start-up (fresh process, `python app.py` minus serving forever, then the page and its config once)")
    print(f"model: {report['model']} ({report['parameters'] / 1e6:.2f}M parameters), {report['threads']} threads")
    print(
        f"process start -> first page served: {wall:.1f} s wall, of which imports {report['imports_s']:.1f} s, "
        f"model {report['model_s']:.1f} s, page {report['page_s']:.1f} s, server {report['launch_s']:.1f} s, "
        f"first page and config {report['first_page_s']:.1f} s"
    )
    print(f"memory once ready: {report['rss_mib']:.0f} MiB resident (peak {report['peak_rss_mib']:.0f} MiB)")


def make_photo(path: Path, width: int, height: int) -> None:
    """A natural photo (scikit-image's coffee) resized to width×height, saved as a JPEG like a camera would."""
    import cv2
    import numpy as np
    import skimage.data
    from PIL import Image

    photo = cv2.resize(skimage.data.coffee(), (width, height), interpolation=cv2.INTER_CUBIC)
    Image.fromarray(np.ascontiguousarray(photo)).save(path, quality=92)


def measure_deblur(args: argparse.Namespace) -> None:
    import torch

    sys.path.insert(0, str(ROOT))
    import numpy as np
    from PIL import Image

    import app
    from defocusgan_hf.image_io import load_image
    from defocusgan_hf.models import DefocusDeblurNet, DualPixelDefocusNet
    from defocusgan_hf.pipelines import DefocusDeblurPipeline
    from defocusgan_hf.pipelines.tiling import count_tiles

    work = Path(tempfile.mkdtemp(prefix="bench-app-"))
    os.environ["GRADIO_TEMP_DIR"] = str(work / "gradio")  # the app's results go there; removed at the end
    try:
        photo = work / "photo.jpg"
        make_photo(photo, args.width, args.height)
        torch.manual_seed(0)
        pipe = DefocusDeblurPipeline(deblur_net=DefocusDeblurNet().eval(), defocus_net=DualPixelDefocusNet().eval())
        handler = app.DefocusApp(pipe, "benchmark")
        pipe.set_progress_bar_config(disable=True)
        loaded = load_image(photo)
        tiles = count_tiles(args.height, args.width, app.TILE_SIZE, app.TILE_OVERLAP)
        print(
            f"\n== Deblurring a {args.width}×{args.height} photo: DefocusDeblurNet() "
            f"({sum(p.numel() for p in pipe.deblur_net.parameters()) / 1e6:.2f}M parameters), "
            f"tiles {app.TILE_SIZE} px / overlap {app.TILE_OVERLAP} px = {tiles} tiles; "
            f"{app.available_cpus()} CPUs available, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}; "
            f"median of {args.repeats} after a warm-up"
        )
        print(f"{'threads':>7} | {'pipeline s':>10} | {'whole request s':>15} | {'peak RSS MiB':>12}")
        for threads in args.threads:
            app.configure_threads(threads)
            pipe(loaded, app.TILE_SIZE, app.TILE_OVERLAP, output_type="np")  # warm-up
            pipeline_times, request_times = [], []
            for _ in range(args.repeats):
                start = time.perf_counter()
                pipe(loaded, app.TILE_SIZE, app.TILE_OVERLAP, output_type="np")
                pipeline_times.append(time.perf_counter() - start)
                start = time.perf_counter()
                handler.deblur(str(photo))
                request_times.append(time.perf_counter() - start)
            print(
                f"{threads:>7} | {statistics.median(pipeline_times):>10.2f} | "
                f"{statistics.median(request_times):>15.2f} | {rss_mb()[1]:>12.0f}"
            )
        if not args.skip_dual_pixel:  # the DP tab: map + all-in-focus, on a pair made by shifting the photo 2 px
            shifted = work / "shifted.png"
            Image.fromarray(np.roll(np.asarray(Image.open(photo)), 2, axis=1)).save(shifted, compress_level=1)
            handler.defocus_map(str(photo), str(shifted))  # warm-up
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                handler.defocus_map(str(photo), str(shifted))
                times.append(time.perf_counter() - start)
            print(
                f"defocus map + all-in-focus of a {args.width}×{args.height} DP pair, "
                f"{torch.get_num_threads()} threads: "
                f"whole request {statistics.median(times):.2f} s, peak RSS {rss_mb()[1]:.0f} MiB"
            )
        for tile_size in args.tile_sizes:  # alternatives to the app's tile size, pipeline only
            pipe(loaded, tile_size, app.TILE_OVERLAP, output_type="np")
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                pipe(loaded, tile_size, app.TILE_OVERLAP, output_type="np")
                times.append(time.perf_counter() - start)
            count = count_tiles(args.height, args.width, tile_size, app.TILE_OVERLAP)
            print(
                f"tile {tile_size} px ({count} tiles), {torch.get_num_threads()} threads: pipeline "
                f"{statistics.median(times):.2f} s, peak RSS {rss_mb()[1]:.0f} MiB"
            )

        def run(ensemble=False, autocast=None):
            pipe.enable_autocast(autocast)
            pipe(loaded, app.TILE_SIZE, app.TILE_OVERLAP, output_type="np", self_ensemble=ensemble)
            pipe.enable_autocast(None)

        if args.self_ensemble:  # the app's checkbox: both settings timed alternately, so load changes hit both
            plain, averaged = alternate({"plain": run, "x8": lambda: run(ensemble=True)}, args.repeats).values()
            print(
                f"x8 self-ensemble, {torch.get_num_threads()} threads: pipeline {averaged:.2f} s against {plain:.2f} s "
                f"plain, ratio {averaged / plain:.2f}"
            )
        if args.bfloat16:  # what `defocusgan-deblur --dtype bfloat16` does, against the app's float32 default
            fp32, bf16 = alternate({"fp32": run, "bf16": lambda: run(autocast=torch.bfloat16)}, args.repeats).values()
            print(
                f"bf16 autocast (float32 weights), {torch.get_num_threads()} threads, tiles {app.TILE_SIZE} px: "
                f"pipeline {bf16:.2f} s against {fp32:.2f} s in float32, time ratio {bf16 / fp32:.2f}"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def alternate(fns: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each of ``fns`` after one warm-up call each, timed interleaved (``paired_times``)."""
    from bench_generator import paired_times

    return {name: statistics.median(t) for name, t in paired_times(fns, warmup=1, repeats=repeats).items()}


def main(args: argparse.Namespace) -> None:
    if args.startup_child:
        startup_child()
        return
    load = os.getloadavg()[0]
    print(f"load average before the benchmark: {load:.2f} on {os.cpu_count()} CPUs", flush=True)
    if not args.skip_startup:
        measure_startup()
    if not args.skip_deblur:
        measure_deblur(args)


if __name__ == "__main__":
    main(parse_args())
