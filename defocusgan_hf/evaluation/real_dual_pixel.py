"""Stage 1 on real dual-pixel captures, where no true defocus map exists (issue: defocus maps from real DP views).

For each scene folder with ``dp_a.png`` / ``dp_b.png`` (order unknown), ``sharp.png`` and ``blurred.png``:

- **reblur L1** (Eq. 2, the stage-1 objective) of the net's map under the kernel bank it was trained with, beside
  the **best single constant map** for that image (every radius of both sides tried) and the **per-pixel search**
  (:func:`~defocusgan_hf.models.reblur.search_coc`, which sees the sharp image: a lower bound the net, which sees
  only the views, is not expected to reach), and ``1 - L1_net / L1_constant``: how much better than any constant
  the net's map explains the real blur;
- **sign flip on swap**: among the pixels where the map reads ``|CoC| > 2`` px, the fraction whose sign flips when
  the two views are swapped (the physics: swapping the half-apertures mirrors near and far);
- a picture per scene: the two views, the map in the app's colour scale, the reblurred image and the real one.

``predict(left, right) -> (H, W)`` signed CoC in px is any map estimator (the pipeline's ``predict_defocus_map``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..image_io import to_tensor
from ..models.reblur import bank_layers, reblur, search_coc
from .real_captures import RealScene

SIGNED_COLORMAP = "RdBu_r"
"""The app's colour scale for signed maps (``image_io.colorize_defocus_map``): blue near, red far."""
MapPredictor = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass
class DualPixelSceneResult:
    name: str
    reblur_l1_net: float
    reblur_l1_constant: float
    best_constant: float
    reblur_l1_search: float
    sign_flip: float | None
    defocused_fraction: float

    @property
    def improvement_over_constant(self) -> float:
        """``1 - L1_net / L1_constant``: > 0 when the map explains the blur better than any constant map."""
        return 1.0 - self.reblur_l1_net / max(self.reblur_l1_constant, 1e-12)

    def to_dict(self) -> dict:
        return {**asdict(self), "improvement_over_constant": self.improvement_over_constant}


def sign_flip_fraction(forward: np.ndarray, swapped: np.ndarray, threshold: float = 2.0) -> float | None:
    """Among pixels with ``|forward| > threshold`` px, the fraction where ``swapped`` has the opposite sign."""
    defocused = np.abs(forward) > threshold
    if not defocused.any():
        return None
    return float((np.sign(swapped[defocused]) == -np.sign(forward[defocused])).mean())


@torch.no_grad()
def evaluate_dual_pixel_scene(
    scene: RealScene, predict: MapPredictor, kernels: torch.Tensor
) -> tuple[DualPixelSceneResult, dict[str, np.ndarray]]:
    """Figures of one scene, and the arrays for its picture (``map``, ``reblurred``)."""
    if scene.dp_views is None or scene.target is None:
        raise ValueError(f"{scene.name}: needs both DP views and the sharp image.")
    view_a, view_b = scene.dp_views
    coc = np.asarray(predict(view_a, view_b), dtype=np.float32).reshape(scene.image.shape[:2])
    swapped = np.asarray(predict(view_b, view_a), dtype=np.float32).reshape(coc.shape)
    if kernels.dim() == 3:
        kernels = kernels[None]
    sharp, blurred = to_tensor(scene.target)[0], to_tensor(scene.image)[0]
    layers = bank_layers(sharp, kernels)  # (1, S, R + 1, C, H, W): every radius of every side, once
    constant_l1 = (layers[0] - blurred[0]).abs().mean(dim=(-3, -2, -1))  # (S, R + 1)
    side, radius = np.unravel_index(int(constant_l1.argmin()), tuple(constant_l1.shape))
    reblurred = reblur(sharp, torch.from_numpy(coc)[None, None], kernels, layers=layers)
    searched = search_coc(sharp, blurred, kernels, layers=layers)
    result = DualPixelSceneResult(
        name=scene.name,
        reblur_l1_net=float((reblurred - blurred).abs().mean()),
        reblur_l1_constant=float(constant_l1.min()),
        best_constant=float(radius if side == 0 else -radius),
        reblur_l1_search=float((reblur(sharp, searched, kernels, layers=layers) - blurred).abs().mean()),
        sign_flip=sign_flip_fraction(coc, swapped),
        defocused_fraction=float((np.abs(coc) > 2).mean()),
    )
    return result, {"map": coc, "reblurred": reblurred[0].permute(1, 2, 0).clamp(0, 1).numpy()}


def summarise_dual_pixel(results: Sequence[DualPixelSceneResult]) -> dict[str, float | int | None]:
    flips = [r.sign_flip for r in results if r.sign_flip is not None]
    return {
        "scenes": len(results),
        "reblur_l1_net": float(np.mean([r.reblur_l1_net for r in results])),
        "reblur_l1_constant": float(np.mean([r.reblur_l1_constant for r in results])),
        "reblur_l1_search": float(np.mean([r.reblur_l1_search for r in results])),
        "improvement_over_constant": float(np.mean([r.improvement_over_constant for r in results])),
        "search_improvement_over_constant": float(
            np.mean([1 - r.reblur_l1_search / max(r.reblur_l1_constant, 1e-12) for r in results])
        ),
        "sign_flip": float(np.mean(flips)) if flips else None,
    }


def dual_pixel_figure(scene: RealScene, arrays: dict[str, np.ndarray], result: DualPixelSceneResult, max_coc: float):
    """A matplotlib ``Figure``: view a | view b | map (the app's colour scale, px) | reblurred | real blurred."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(15, 2.9), dpi=100, layout="constrained")
    axes = figure.subplots(1, 5)
    panels = [(scene.dp_views[0], "view a"), (scene.dp_views[1], "view b")]
    for ax, (image, title) in zip(axes[:2], panels):
        ax.imshow(np.clip(image, 0, 1))
        ax.set_title(title, fontsize=9)
    mappable = axes[2].imshow(arrays["map"], cmap=SIGNED_COLORMAP, vmin=-max_coc, vmax=max_coc)
    axes[2].set_title(f"signed CoC (px); flip on swap {result.sign_flip or 0:.0%}", fontsize=9)
    figure.colorbar(mappable, ax=axes[2], fraction=0.046)
    axes[3].imshow(arrays["reblurred"])
    axes[3].set_title(f"sharp reblurred by the map: L1 {result.reblur_l1_net:.4f}", fontsize=9)
    axes[4].imshow(np.clip(scene.image, 0, 1))
    axes[4].set_title(
        f"real blurred (best constant {result.best_constant:+.0f} px: {result.reblur_l1_constant:.4f})", fontsize=9
    )
    for ax in axes:
        ax.set_axis_off()
    figure.suptitle(f"scene {scene.name}", fontsize=10)
    return figure


def write_dual_pixel_figures(
    scenes: Sequence[RealScene],
    arrays: Sequence[dict],
    results: Sequence[DualPixelSceneResult],
    folder: str | os.PathLike,
    max_coc: float = 25.0,
) -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for scene, array, result in zip(scenes, arrays, results):
        path = folder / f"dual_pixel_{scene.name}.png"
        dual_pixel_figure(scene, array, result, max_coc).savefig(path)
        paths.append(path)
    return paths


__all__ = [
    "DualPixelSceneResult",
    "dual_pixel_figure",
    "evaluate_dual_pixel_scene",
    "sign_flip_fraction",
    "summarise_dual_pixel",
    "write_dual_pixel_figures",
]
