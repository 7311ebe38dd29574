"""Stage 1 on real DP scenes that come with a relative defocus map (the Pixel 4 scenes of Xin et al., ICCV 2021).

For each scene folder with ``dp_a.png`` (left), ``dp_b.png`` (right), ``sharp.png``, ``blurred.png`` and
``defocus_map.png`` (relative: affine in inverse depth, sign and scale unknown):

- the views' tone (linear or gamma-encoded) is decided once (:func:`~defocusgan_hf.pipelines.dual_pixel_views.
  resolve_linear`, from ``blurred.png`` unless given); linear views and the sharp image are gamma-encoded, the
  net's convention, before anything else;
- three maps, each scored by :func:`~defocusgan_hf.evaluation.rank_agreement.rank_error` ``1 - |ρs|`` against
  ``defocus_map.png`` (every ``stride``-th pixel after bilinear resizing to its size): the net's signed map
  ``predict(left, right)``; the per-pixel DP-view search (:func:`~defocusgan_hf.models.reblur.search_signed_coc`
  with the half-aperture split of the kernel bank, on the channel mean: it sees the sharp image, a reference, not
  a competitor); and a constant map, 1 by definition;
- **sign flip on swap**, as for the DPDD scenes (:func:`~.real_dual_pixel.sign_flip_fraction`);
- a picture per scene: the views, the net's and the search's maps (signed, px) and the reference map (normalised
  to [0, 1], in the same colour scale).

``predict(left, right) -> ((H, W) signed CoC in px, convention dict or None)`` is any map estimator (the pipeline's
``predict_defocus_map`` with ``return_convention=True``, its convention as a dict).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..models.reblur import search_signed_coc
from ..pipelines.dual_pixel_views import DualPixelConvention, gamma_encode, resolve_linear
from .rank_agreement import DEFAULT_RANK_STRIDE, rank_error, signed_rank_correlation
from .real_captures import RealScene
from .real_dual_pixel import SIGNED_COLORMAP, sign_flip_fraction

RankedPredictor = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, dict | None]]
FLIP_THRESHOLD = 2.0
"""px: pixels with ``|map|`` above this count for the sign flip (the DPDD scenes' threshold)."""


@dataclass
class RankedSceneResult:
    """Per-scene figures; ``rank_error_*`` are ``1 - |ρs|`` in [0, 1], ``rho_*`` the signed ρs (``None``: no
    ranks)."""

    name: str
    rank_error_net: float
    rank_error_search: float
    rank_error_constant: float
    rho_net: float | None
    rho_search: float | None
    sign_flip: float | None
    defocused_fraction: float
    dual_pixel_convention: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]


def _convention(pipeline: dict | None, linear: bool, decision: str, fit: float | None) -> dict:
    """The pipeline's convention with the scene's tone decision (made here, before the pipeline saw the views)."""
    tone = {"linear": linear, "linear_decision": decision, "linear_fit": fit}
    convention = DualPixelConvention(**{**(pipeline or {"split": "horizontal", "detected": False}), **tone})
    text = convention.describe() if pipeline is not None else convention.describe_tone()
    return {**convention.to_dict(), "description": text}


@torch.no_grad()
def evaluate_ranked_scene(
    scene: RealScene,
    predict: RankedPredictor,
    view_kernels: torch.Tensor,
    linear: bool | None = None,
    stride: int = DEFAULT_RANK_STRIDE,
    window_sigma: float = 8.0,
) -> tuple[RankedSceneResult, dict[str, np.ndarray]]:
    """Figures of one scene and the arrays of its picture (``left``, ``right``, ``net``, ``search``, ``truth``).

    ``view_kernels``: ``(2, 2R + 1, K, K)`` view PSFs of the search
    (:func:`~defocusgan_hf.models.dual_pixel.dual_pixel_view_kernels`); ``linear``: the views' tone, ``None`` to
    detect it from the scene's combined image."""
    if scene.dp_views is None or scene.target is None or scene.defocus_map is None:
        raise ValueError(f"{scene.name}: needs both DP views, the sharp image and defocus_map.png.")
    if scene.dp_a_is_left is False:
        raise ValueError(f"{scene.name}: dp_a is not the left view; the ranked evaluation needs the known order.")
    left, right = scene.dp_views
    linear, decision, fit = resolve_linear(linear, _tensor(left), _tensor(right), _tensor(scene.image))
    sharp = scene.target
    if linear:
        left, right, sharp = gamma_encode(left), gamma_encode(right), gamma_encode(sharp)
    coc, convention = predict(left, right)
    coc = np.asarray(coc, dtype=np.float32).reshape(left.shape[:2])
    swapped = np.asarray(predict(right, left)[0], dtype=np.float32).reshape(coc.shape)
    grey = [_tensor(x).mean(dim=1, keepdim=True) for x in (sharp, left, right)]  # grey views: channels identical
    search = search_signed_coc(*grey, view_kernels, window_sigma)[0, 0].numpy()
    truth = scene.defocus_map
    result = RankedSceneResult(
        name=scene.name,
        rank_error_net=rank_error(coc, truth, stride),
        rank_error_search=rank_error(search, truth, stride),
        rank_error_constant=rank_error(np.zeros_like(truth), truth, stride),
        rho_net=signed_rank_correlation(coc, truth, stride),
        rho_search=signed_rank_correlation(search, truth, stride),
        sign_flip=sign_flip_fraction(coc, swapped, FLIP_THRESHOLD),
        defocused_fraction=float((np.abs(coc) > FLIP_THRESHOLD).mean()),
        dual_pixel_convention=_convention(convention, linear, decision, fit),
    )
    return result, {"left": left, "right": right, "net": coc, "search": search, "truth": truth}


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def summarise_ranked(results: Sequence[RankedSceneResult]) -> dict[str, float | int | None]:
    """Means over the scenes (and the net's best and worst scene) of :class:`RankedSceneResult`'s figures."""
    net = [r.rank_error_net for r in results]
    return {
        "scenes": len(results),
        "rank_error_net": _mean(net),
        "rank_error_net_min": float(min(net)) if net else None,
        "rank_error_net_max": float(max(net)) if net else None,
        "rank_error_search": _mean([r.rank_error_search for r in results]),
        "rank_error_constant": _mean([r.rank_error_constant for r in results]),
        "sign_flip": _mean([r.sign_flip for r in results]),
    }


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "–" if value is None else format(value, spec)


def format_ranked_table(
    results: Sequence[RankedSceneResult],
    summaries: dict[str, dict],
    root: str,
    stride: int,
    symmetric: bool = True,
) -> str:
    """Markdown: the protocol, a row per scene, a row per subset (means)."""
    order = "both view orders, the pipeline's default" if symmetric else "one view order"
    lines = [
        f"### Stage 1 against the authors' relative defocus maps `{root}` ({len(results)} scenes)",
        "",
        f"1 − |ρs| (Spearman's rank correlation, `scipy.stats.spearmanr`) between each map and `defocus_map.png`, "
        f"on every {stride}th pixel of every {stride}th row (starting at pixel {stride // 2}), after a map of another "
        "size is resized to the reference's by bilinear interpolation; 0 is perfect, a constant map scores 1 by "
        "definition (no ranks). The reference is relative (affine in inverse depth, sign and scale unknown), "
        "hence |ρs|. Net: the stage-1 net's signed map from (dp_a = left, dp_b = right), " + order + ". Search: the "
        "per-pixel DP-view search (`search_signed_coc`, the kernel bank split into half-aperture PSFs, channel "
        "mean), which sees the sharp image: a reference, not a competitor. Views whose tone the combined image "
        "shows to be linear are gamma-encoded first (the convention column). Sign flip: among pixels with "
        f"|CoC| > {FLIP_THRESHOLD:g} px, those whose sign flips when the views are swapped.",
        "",
        "| Scene | Net 1 − \\|ρs\\| ↓ | Search 1 − \\|ρs\\| ↓ | Constant | ρs net (signed) | Sign flip on swap | "
        "Views |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        tone = DualPixelConvention(
            **{k: v for k, v in r.dual_pixel_convention.items() if k != "description"}
        ).describe_tone()
        flip = _fmt(r.sign_flip, ".1%")
        lines.append(
            f"| {r.name} | {r.rank_error_net:.3f} | {r.rank_error_search:.3f} | {r.rank_error_constant:.3f} | "
            f"{_fmt(r.rho_net, '+.3f')} | {flip} | {tone} |"
        )
    lines += [
        "",
        "| Subset | Scenes | Net 1 − \\|ρs\\| mean (min–max) ↓ | Search ↓ | Constant | Sign flip on swap |",
        "|---|---|---|---|---|---|",
    ]
    for subset, s in summaries.items():
        lines.append(
            f"| {subset} | {s['scenes']} | {_fmt(s['rank_error_net'])} ({_fmt(s['rank_error_net_min'])}–"
            f"{_fmt(s['rank_error_net_max'])}) | {_fmt(s['rank_error_search'])} | {_fmt(s['rank_error_constant'])} | "
            f"{_fmt(s['sign_flip'], '.1%')} |"
        )
    lines.append("")
    return "\n".join(lines)


def _span(values: np.ndarray) -> float:
    """Symmetric colour range of a signed map: its 99th percentile of ``|map|`` (px), at least 0.5."""
    return max(float(np.percentile(np.abs(values), 99)), 0.5)


def ranked_figure(arrays: dict[str, np.ndarray], result: RankedSceneResult, dpi: int = 72):
    """A matplotlib ``Figure``: left | right | net map | search map (px, the app's signed colour scale, ±their 99th
    percentile) | the reference map normalised to [0, 1] (relative: sign and scale unknown) in the same scale."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(16, 2.9), dpi=dpi, layout="constrained")
    axes = figure.subplots(1, 5)
    for ax, key in zip(axes[:2], ("left", "right")):
        ax.imshow(np.clip(arrays[key].mean(axis=-1), 0, 1), cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{key} view (dp_{'a' if key == 'left' else 'b'})", fontsize=9)
    for ax, key, score in zip(axes[2:4], ("net", "search"), (result.rank_error_net, result.rank_error_search)):
        span = _span(arrays[key])
        mappable = ax.imshow(arrays[key], cmap=SIGNED_COLORMAP, vmin=-span, vmax=span)
        ax.set_title(f"{key}: signed CoC (px); 1 − |ρs| {score:.3f}", fontsize=9)
        figure.colorbar(mappable, ax=ax, fraction=0.046)
    truth = arrays["truth"]
    low, high = float(truth.min()), float(truth.max())
    mappable = axes[4].imshow((truth - low) / max(high - low, 1e-12), cmap=SIGNED_COLORMAP, vmin=0, vmax=1)
    axes[4].set_title("authors' map, normalised 0–1 (relative)", fontsize=9)
    figure.colorbar(mappable, ax=axes[4], fraction=0.046)
    for ax in axes:
        ax.set_axis_off()
    flip = "–" if result.sign_flip is None else f"{result.sign_flip:.0%}"
    figure.suptitle(f"scene {result.name}: sign flip on swap {flip}", fontsize=10)
    return figure


def write_ranked_figures(
    arrays: Sequence[dict], results: Sequence[RankedSceneResult], folder: str | os.PathLike
) -> list[Path]:
    """``folder/dual_pixel_<scene>.png`` per scene (:func:`ranked_figure`)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for array, result in zip(arrays, results):
        path = folder / f"dual_pixel_{result.name}.png"
        ranked_figure(array, result).savefig(path)
        paths.append(path)
    return paths


__all__ = [
    "FLIP_THRESHOLD",
    "RankedSceneResult",
    "evaluate_ranked_scene",
    "format_ranked_table",
    "ranked_figure",
    "summarise_ranked",
    "write_ranked_figures",
]
