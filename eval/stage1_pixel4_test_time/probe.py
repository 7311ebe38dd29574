"""#26 probe: what test-time choices do to the shipped stage-1 map on the Pixel 4 scenes (1 - |rho_s| against the
authors' relative defocus_map.png, as ``defocusgan-eval --dataset real --dual_pixel`` scores it).

Rows: the whole frame against tiles (the pipeline's and the CLI's default 512 px), the views resized before the net
(the map divided by the factor and resized back), and the whole-frame map smoothed after the net (Gaussian, and a
guided filter with the combined image as guide: an edge-aware smoothing, He et al. 2010). Choose on 001-004, report
005-008. Nothing here trains; defocus_map.png is read for scoring only.

    python eval/stage1_pixel4_test_time/probe.py --root ../shared/real/pixel4 --model checkpoints/defocusgan-synthetic \
        --maps_dir runs/stage1_test_time > eval/stage1_pixel4_test_time/probe.log

``smoothness_prior.sh LAMBDA`` trains a candidate stage-1 net (the Pixel 4 fine-tune of docs/RESULTS.md with Eq. 5's
prior on from step 0) and scores it here with ``--whole_frame_only``. ``--view_orders`` scores each view order of
the net on its own and the part of its answer that flips with the order (what carries the sign of the disparity):

    python eval/stage1_pixel4_test_time/probe.py --view_orders > eval/stage1_pixel4_test_time/view_orders.log
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from defocusgan_hf import DefocusDeblurPipeline
from defocusgan_hf.evaluation.rank_agreement import rank_error
from defocusgan_hf.evaluation.real_captures import load_scenes

CHOOSE, HELD_OUT = ("001", "002", "003", "004"), ("005", "006", "007", "008")
# (label, tile_size or None for the whole frame, tile_overlap, view scale)
MAP_ROWS = [
    ("whole frame", None, 64, 1.0),
    ("tiles 512 / 64", 512, 64, 1.0),
    ("tiles 768 / 128", 768, 128, 1.0),
    ("tiles 1024 / 128", 1024, 128, 1.0),
    ("views x0.5, whole", None, 64, 0.5),
    ("views x1.5, whole", None, 64, 1.5),
]


def resize(image: np.ndarray, scale: float) -> np.ndarray:
    """``(H, W, C)`` in [0, 1] resized by ``scale`` (bicubic, antialiased when shrinking)."""
    if scale == 1:
        return image
    t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
    t = F.interpolate(t, scale_factor=scale, mode="bicubic", align_corners=False, antialias=scale < 1)
    return t.clamp(0, 1)[0].permute(1, 2, 0).numpy()


def box(x: np.ndarray, r: int) -> np.ndarray:
    return ndimage.uniform_filter(x, 2 * r + 1, mode="reflect")


def guided_filter(guide: np.ndarray, values: np.ndarray, r: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter (grey guide), written out because scipy/scikit-image have none; a probe only."""
    mean_i, mean_p = box(guide, r), box(values, r)
    a = (box(guide * values, r) - mean_i * mean_p) / (box(guide * guide, r) - mean_i**2 + eps)
    b = mean_p - a * mean_i
    return box(a, r) * guide + box(b, r)


def scores(maps: dict[str, np.ndarray], scenes) -> tuple[float, float, list[float]]:
    errors = {name: rank_error(m, scenes[name].defocus_map) for name, m in maps.items()}
    return (
        float(np.mean([errors[n] for n in CHOOSE])),
        float(np.mean([errors[n] for n in HELD_OUT])),
        [errors[n] for n in sorted(errors)],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default="../shared/real/pixel4")
    parser.add_argument("--model", default="checkpoints/defocusgan-synthetic")
    parser.add_argument("--maps_dir", default="runs/stage1_test_time", help="Maps are cached here (npz).")
    parser.add_argument(
        "--whole_frame_only", action="store_true", help="Only the whole-frame map and its smoothings (a candidate net)."
    )
    parser.add_argument(
        "--view_orders",
        action="store_true",
        help="Instead: the net with one view order f(L, R), the other -f(R, L), and the part that flips with the "
        "order (f(L, R) - f(R, L)) / 2, whole frame, and how often f(L, R) > f(R, L).",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    pipe = DefocusDeblurPipeline.from_pretrained(args.model)
    scenes = {s.name: s for s in load_scenes(args.root, with_dp_views=True)}
    maps_dir = Path(args.maps_dir)
    maps_dir.mkdir(parents=True, exist_ok=True)
    print(f"{'row':34s} choose  held-out | per scene {' '.join(sorted(scenes))}")

    def row(label, maps):
        choose, held, each = scores(maps, scenes)
        print(f"{label:34s} {choose:.3f}   {held:.3f}   | {' '.join(f'{e:.3f}' for e in each)}", flush=True)

    if args.view_orders:
        orders = {}
        for name, scene in scenes.items():
            left, right = scene.dp_views
            forward = pipe.predict_defocus_map(left, right, tile_size=None, symmetric=False, linear=False)[0, ..., 0]
            swapped = pipe.predict_defocus_map(right, left, tile_size=None, symmetric=False, linear=False)[0, ..., 0]
            orders[name] = forward, swapped
            print(
                f"{name}: f(L, R) > f(R, L) on {np.mean(forward > swapped):.1%} of pixels, f(L, R) > 0 on "
                f"{np.mean(forward > 0):.1%}, f(R, L) > 0 on {np.mean(swapped > 0):.1%}",
                flush=True,
            )
        row("one view order, f(L, R)", {n: f for n, (f, _) in orders.items()})
        row("the other, -f(R, L)", {n: -b for n, (_, b) in orders.items()})
        row("the part that flips, (f - b) / 2", {n: (f - b) / 2 for n, (f, b) in orders.items()})
        return

    maps_of = {}
    for label, tile, overlap, scale in MAP_ROWS[:1] if args.whole_frame_only else MAP_ROWS:
        cached = maps_dir / f"maps_t{tile}_o{overlap}_s{scale}.npz"
        if cached.is_file():
            maps = dict(np.load(cached))
        else:
            maps = {}
            for name, scene in scenes.items():
                left, right = (resize(v, scale) for v in scene.dp_views)
                coc = pipe.predict_defocus_map(left, right, tile_size=tile, tile_overlap=overlap, linear=False)
                maps[name] = coc[0, ..., 0] / scale  # CoC in pixels of the resized views -> of the frame
            np.savez_compressed(cached, **maps)
        row(label, maps)
        maps_of[label] = maps
    whole = maps_of["whole frame"]
    for sigma in (8, 16, 32, 64):
        row(f"whole frame, Gaussian sigma {sigma}", {n: ndimage.gaussian_filter(m, sigma) for n, m in whole.items()})
    for r in (16, 32, 64, 128):
        for eps in (1e-3, 1e-2):
            guided = {
                n: guided_filter(scenes[n].image.mean(-1).astype(np.float64), m.astype(np.float64), r, eps)
                for n, m in whole.items()
            }
            row(f"whole frame, guided r {r} eps {eps:g}", guided)


if __name__ == "__main__":
    main()
