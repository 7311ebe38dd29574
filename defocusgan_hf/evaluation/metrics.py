"""Image-quality and defocus-map metrics for the paper's evaluation protocol (Table 1, 3 and 5).

Two protocols, named in every result (``shared/reference/facts.md``, "Metrics"):

* ``"seed"`` — what the authors' code computes: 16-bit images divided by 65535, **no** 8-bit rounding; PSNR =
  10·log10(1 / MSE) per image; SSIM = scikit-image ``structural_similarity(data_range=1, channel_axis=2)`` on RGB;
  MAE = mean |difference|; LPIPS with the **SqueezeNet** backbone.
* ``"peer"`` — what most peers report (Restormer's script): the input, the prediction and the ground truth
  quantised to 8 bits first; the same PSNR / SSIM / MAE; LPIPS with the **AlexNet** backbone.

The two differ by up to 0.6 dB for the same model, so a number without its protocol means little.
Per-image values are averaged over images (not over pixels), as the seed's code does.

CoC-map error: MAE in pixels between an estimated and a true signed CoC map. An unsupervised map (stage 1 of the
paper) learns the sign of defocus from the DP disparity only up to the convention of its training data, so the
error of the magnitudes ``| |est| - |true| |`` is reported beside the signed one: it does not punish a flipped sign.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

METRIC_NAMES = ("psnr", "ssim", "mae", "lpips", "coc_mae", "abs_coc_mae", "reblur_l1")
HIGHER_IS_BETTER = {
    "psnr": True,
    "ssim": True,
    "mae": False,
    "lpips": False,
    "coc_mae": False,
    "abs_coc_mae": False,
    "reblur_l1": False,
}

DPDD_TEST_SIZE = 76
# 0-based indices into the 76 DPDD test scenes sorted by file name (facts.md): 37 indoor, the other 39 outdoor.
DPDD_INDOOR_INDICES = frozenset([*range(8, 14), 16, 32, *range(39, 57), *range(59, 68), 74, 75])


@dataclass(frozen=True)
class Protocol:
    """How images are prepared and which LPIPS backbone is used.

    Args:
        name: ``"seed"`` or ``"peer"``.
        quantize_bits: round images to this many bits before any metric (``None``: keep floats).
        lpips_net: LPIPS backbone, ``"squeeze"`` (SqueezeNet-1.1) or ``"alex"`` (AlexNet).
        description: one line for tables and JSON.
    """

    name: str
    quantize_bits: int | None
    lpips_net: str
    description: str

    def to_dict(self) -> dict:
        return asdict(self)


PROTOCOLS = {
    "seed": Protocol(
        "seed",
        None,
        "squeeze",
        "seed's code: 16-bit images as float (no rounding), skimage SSIM on RGB, LPIPS-SqueezeNet",
    ),
    "peer": Protocol(
        "peer", 8, "alex", "peers' (Restormer's) script: 8-bit images, skimage SSIM on RGB, LPIPS-AlexNet"
    ),
}


def get_protocol(name: str | Protocol) -> Protocol:
    """The :class:`Protocol` called ``name`` (``"seed"`` or ``"peer"``)."""
    if isinstance(name, Protocol):
        return name
    if name not in PROTOCOLS:
        raise ValueError(f"Unknown protocol {name!r}; choose one of {sorted(PROTOCOLS)}.")
    return PROTOCOLS[name]


def as_image_array(image) -> np.ndarray:
    """``(H, W, 3)`` float64 array in [0, 1] from an array ``(H, W, 3)`` / ``(1, H, W, 3)`` (uint8, uint16 or
    float in [0, 1]) or a tensor ``(3, H, W)`` / ``(1, 3, H, W)`` in [0, 1]."""
    if hasattr(image, "detach"):  # torch tensor, channels first
        image = image.detach().cpu().float().numpy()
        if image.ndim == 4 and image.shape[0] == 1:
            image = image[0]
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"Expected an image tensor (3, H, W) or (1, 3, H, W), got shape {image.shape}.")
        image = image.transpose(1, 2, 0)
    image = np.asarray(image)
    if image.ndim == 4 and image.shape[0] == 1:
        image = image[0]
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"Expected an RGB image (H, W, 3), got shape {image.shape}.")
    if image.dtype == np.uint8:
        return image.astype(np.float64) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float64) / 65535.0
    if not np.issubdtype(image.dtype, np.floating):
        raise TypeError(f"Images must be uint8, uint16 or float in [0, 1], got dtype {image.dtype}.")
    return np.clip(image.astype(np.float64), 0.0, 1.0)


def prepare(image, protocol: str | Protocol) -> np.ndarray:
    """``image`` as :func:`as_image_array`, then quantised as the protocol says (``"peer"``: to 8 bits)."""
    protocol = get_protocol(protocol)
    array = as_image_array(image)
    if protocol.quantize_bits is not None:
        levels = 2**protocol.quantize_bits - 1
        array = np.round(array * levels) / levels
    return array


def _check_pair(prediction: np.ndarray, target: np.ndarray) -> None:
    if prediction.shape != target.shape:
        raise ValueError(f"Prediction {prediction.shape} and target {target.shape} must have the same shape.")


def psnr(prediction: np.ndarray, target: np.ndarray) -> float:
    """PSNR in dB of two ``(H, W, 3)`` images in [0, 1] (scikit-image, ``data_range=1``); inf when identical."""
    _check_pair(prediction, target)
    if np.array_equal(prediction, target):
        return float("inf")
    return float(peak_signal_noise_ratio(target, prediction, data_range=1.0))


def ssim(prediction: np.ndarray, target: np.ndarray) -> float:
    """SSIM of two ``(H, W, 3)`` images in [0, 1]: scikit-image's default 7×7 uniform window on each channel,
    averaged (``data_range=1, channel_axis=2``), as the seed's code computes it."""
    _check_pair(prediction, target)
    return float(structural_similarity(target, prediction, data_range=1.0, channel_axis=2))


def mae(prediction: np.ndarray, target: np.ndarray) -> float:
    """Mean absolute difference of two images in [0, 1] (intensity units)."""
    _check_pair(prediction, target)
    return float(np.mean(np.abs(prediction - target)))


def coc_errors(estimated, true) -> dict[str, float]:
    """CoC-map errors in pixels of two signed maps ``(H, W)``, ``(H, W, 1)`` or ``(1, 1, H, W)``.

    Returns ``coc_mae`` = mean |est - true| and ``abs_coc_mae`` = mean | |est| - |true| | (blind to the sign).
    """
    est = np.squeeze(np.asarray(estimated.detach().cpu() if hasattr(estimated, "detach") else estimated, np.float64))
    ref = np.squeeze(np.asarray(true.detach().cpu() if hasattr(true, "detach") else true, np.float64))
    if est.shape != ref.shape or est.ndim != 2:
        raise ValueError(f"CoC maps must be two (H, W) maps of one size, got {est.shape} and {ref.shape}.")
    return {
        "coc_mae": float(np.mean(np.abs(est - ref))),
        "abs_coc_mae": float(np.mean(np.abs(np.abs(est) - np.abs(ref)))),
    }


# |CoC| ranges (px) of the per-defocus breakdown: [0, 2), [2, 5), [5, 10), [10, 15), [15, ∞). The paper's four guidance
# bins (0 / 1.9 / 4.2 / 6.2 px) split only the small radii; the synthetic sets reach 25 px.
DEFAULT_COC_EDGES = (0.0, 2.0, 5.0, 10.0, 15.0)


def parse_coc_edges(text: str) -> tuple[float, ...]:
    """``"0,2,5,10,15"`` → the lower edges (px) of the |CoC| ranges; they must start at 0 and increase."""
    try:
        edges = tuple(float(t) for t in text.split(","))
    except ValueError:
        raise ValueError(f"|CoC| range edges must be comma-separated numbers of pixels, got {text!r}.") from None
    if len(edges) < 2 or edges[0] != 0 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"|CoC| range edges must start at 0 and increase, at least two of them, got {text!r}.")
    return edges


def squared_error_by_coc(prediction: np.ndarray, target: np.ndarray, coc, edges: Sequence[float]):
    """Sum of squared errors and pixel count of each |CoC| range, to pool over a set.

    ``prediction``, ``target``: ``(H, W, 3)`` in [0, 1]; ``coc``: the true signed CoC map ``(H, W)`` in px;
    ``edges``: lower edges of the ranges ``[e_i, e_{i+1})``, the last one open. A pixel's squared error is the mean
    over its channels. Returns two float64 arrays ``(len(edges),)``.
    """
    _check_pair(prediction, target)
    radius = np.abs(np.squeeze(np.asarray(coc, np.float64)))
    if radius.shape != prediction.shape[:2]:
        raise ValueError(f"The CoC map {radius.shape} must match the image {prediction.shape[:2]}.")
    error = np.mean((np.asarray(prediction, np.float64) - np.asarray(target, np.float64)) ** 2, axis=-1)
    index = np.searchsorted(np.asarray(edges, np.float64), radius, side="right") - 1
    sums = np.bincount(index.ravel(), weights=error.ravel(), minlength=len(edges))
    counts = np.bincount(index.ravel(), minlength=len(edges)).astype(np.float64)
    return sums, counts


def pooled_psnr(sums: np.ndarray, counts: np.ndarray) -> list[float | None]:
    """PSNR (dB, peak 1) of each range from pooled squared errors: 10·log10(count / sum); ``None`` for an empty
    range. Hand-written because scikit-image's PSNR takes whole images, not masked pixel sets."""
    values = []
    for total, count in zip(sums, counts):
        if count == 0:
            values.append(None)
        else:
            values.append(float("inf") if total == 0 else float(10 * np.log10(count / total)))
    return values


def image_metrics(prediction, target, protocol: str | Protocol = "seed", lpips=None) -> dict[str, float]:
    """PSNR, SSIM, MAE (and LPIPS when an ``lpips`` callable is given) of one image pair under ``protocol``.

    ``lpips``: a callable taking two ``(H, W, 3)`` float arrays in [0, 1] and returning a float, e.g.
    :class:`defocusgan_hf.perceptual.lpips.LPIPS` (its backbone must be the protocol's).
    """
    protocol = get_protocol(protocol)
    pred, ref = prepare(prediction, protocol), prepare(target, protocol)
    _check_pair(pred, ref)
    values = {"psnr": psnr(pred, ref), "ssim": ssim(pred, ref), "mae": mae(pred, ref)}
    if lpips is not None:
        values["lpips"] = float(lpips(pred, ref))
    return values


def dpdd_scene_group(index: int) -> str:
    """``"indoor"`` or ``"outdoor"`` for the 0-based ``index`` of a DPDD test scene in name order (0..75)."""
    if not 0 <= index < DPDD_TEST_SIZE:
        raise ValueError(f"A DPDD test index must be in 0..{DPDD_TEST_SIZE - 1}, got {index}.")
    return "indoor" if index in DPDD_INDOOR_INDICES else "outdoor"


def dpdd_groups(names: Sequence[str]) -> dict[str, str]:
    """``{name: "indoor" | "outdoor"}`` for the 76 DPDD test file names (sorted here, as the split's indices are)."""
    names = sorted(names)
    if len(names) != DPDD_TEST_SIZE:
        raise ValueError(
            f"The indoor/outdoor split is defined on the {DPDD_TEST_SIZE} DPDD test scenes, got {len(names)} images."
        )
    return {name: dpdd_scene_group(i) for i, name in enumerate(names)}


def summarize(rows: Iterable[Mapping], groups: Sequence[str] = ("all",)) -> dict[str, dict[str, float | int]]:
    """Mean of each metric over images, per group.

    ``rows``: per-image dicts with a ``"group"`` key and metric values (missing or ``None`` metrics are skipped).
    Group ``"all"`` takes every row. Returns ``{group: {"count": n, metric: mean, ...}}``; a PSNR of inf
    (identical images) is kept, so a mean over it is inf too.
    """
    rows = list(rows)
    summary: dict[str, dict[str, float | int]] = {}
    for group in groups:
        members = [r for r in rows if group == "all" or r.get("group") == group]
        entry: dict[str, float | int] = {"count": len(members)}
        for metric in METRIC_NAMES:
            values = [r[metric] for r in members if r.get(metric) is not None]
            if values:
                entry[metric] = float(np.mean(values))
        summary[group] = entry
    return summary
