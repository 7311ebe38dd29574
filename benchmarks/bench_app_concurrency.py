"""Load test of the Gradio app's storage: concurrent clients that send the same photo.

The app runs on a local port with a tiny untrained pipeline (the network's speed is not what is measured) and its
own Gradio cache. ``--clients`` threads each send the same 256×256 JPEG ``--rounds`` times through
``gradio_client`` (every request uploads the file again, as separate users would), then one request re-uses an
upload's server path with the other checkbox value (what the browser sends when a user changes a checkbox and
presses the button again). Printed: failed requests out of all, the error messages, and what is left in the cache
after the app is closed (uploads and results, the
shipped examples' cached copies, which Gradio keeps on purpose, and empty folders).

    OMP_NUM_THREADS=1 python benchmarks/bench_app_concurrency.py --clients 8 --rounds 6
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import os
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8, help="concurrent gradio_client clients.")
    parser.add_argument("--rounds", type=int, default=6, help="requests per client, one after the other.")
    return parser.parse_args()


def upload(client, path: Path) -> str:
    """Upload ``path`` as the page does and return its path on the server (in the app's Gradio cache)."""
    import httpx

    with open(path, "rb") as handle:
        response = httpx.post(client.upload_url, files=[("files", (path.name, handle))])
    response.raise_for_status()
    return response.json()[0]


def main(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch
    from gradio_client import Client, handle_file
    from PIL import Image

    from defocusgan_hf.models import DefocusDeblurNet, DualPixelDefocusNet
    from defocusgan_hf.pipelines import DefocusDeblurPipeline

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="bench-app-concurrency-"))
    cache = work / "gradio-cache"
    os.environ["GRADIO_TEMP_DIR"] = str(cache)
    spec = importlib.util.spec_from_file_location("app", ROOT / "app.py")
    app = importlib.util.module_from_spec(spec)
    sys.modules["app"] = app
    spec.loader.exec_module(app)

    torch.manual_seed(0)
    pipe = DefocusDeblurPipeline(
        deblur_net=DefocusDeblurNet(level_channels=(4, 4, 8, 8, 8), branch_depths=(0, 1, 1, 1)).eval(),
        defocus_net=DualPixelDefocusNet(level_channels=(4, 8, 8), branch_depths=(1, 1)).eval(),
    )
    photo = work / "same.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(photo, quality=90)

    demo = app.build_demo(pipe, "tiny")
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **app.LAUNCH_KWARGS)
    errors: collections.Counter[str] = collections.Counter()
    try:

        def client_run(index: int) -> list[str | None]:
            client = Client(url, verbose=False, download_files=str(work / f"downloads-{index}"))
            outcomes = []
            for _ in range(args.rounds):
                try:
                    client.predict(handle_file(str(photo)), False, api_name="/deblur")
                    outcomes.append(None)
                except Exception as err:  # noqa: BLE001 (counted and printed: this is the measurement)
                    outcomes.append(f"{type(err).__name__}: {err}")
            return outcomes

        with ThreadPoolExecutor(args.clients) as pool:
            outcomes = [o for run in pool.map(client_run, range(args.clients)) for o in run]
        # The browser's re-run: the same server path, not uploaded again, with the checkbox changed.
        client = Client(url, verbose=False, download_files=str(work / "downloads-rerun"))
        server_path = upload(client, photo)
        rerun = []
        for ensemble in (False, True):
            try:
                client.predict({"path": server_path, "orig_name": photo.name}, ensemble, api_name="/deblur")
                rerun.append(None)
            except Exception as err:  # noqa: BLE001
                rerun.append(f"{type(err).__name__}: {err}")
    finally:
        (app.close if hasattr(app, "close") else type(demo).close)(demo)
    errors.update(o for o in outcomes if o)
    left = [p for p in cache.rglob("*")] if cache.exists() else []
    report = {
        "requests": len(outcomes),
        "failed": sum(o is not None for o in outcomes),
        "errors": dict(errors),
        "rerun_same_path_with_checkbox_changed": rerun,
        "left_after_close": {
            "uploads_and_results": sum(p.is_file() and not (app.EXAMPLES_DIR / p.name).is_file() for p in left),
            "example_copies": sum(p.is_file() and (app.EXAMPLES_DIR / p.name).is_file() for p in left),
            "empty_folders": sum(p.is_dir() and not any(p.iterdir()) for p in left),
        },
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main(parse_args())
