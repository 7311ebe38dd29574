"""Evaluate deblurring models and the two-stage baselines with the paper's protocol (Tables 1, 3 and 5).

    python -m defocusgan_hf.evaluate --dataset synthetic --root data/synthetic_val --model runs/defocusgan/pipeline \\
        --protocol seed --output_dir eval/synthetic_seed
    defocusgan-eval --dataset dpdd --root /data/dd_dp_dataset_canon --model PATH --protocol peer \\
        --lpips_weights lpips_alex.safetensors --output_dir eval/dpdd_peer
    defocusgan-eval --dataset folder --root PAIRS --model PATH --output_dir eval/pairs   # PAIRS/{blurred,sharp}/
    defocusgan-eval --kernel_ablation --root data/synthetic_val --output_dir eval/table5 \\
        --defocus_models gaussian=runs/s1_gauss,butterworth=runs/s1_bw,learnable=runs/s1_learn

Rows ("methods"): the blurred input itself; the model (``--model``, a pipeline folder or Hub id); and the
two-stage baselines ``{wiener,rl}_{true,estimated}_map``: the CoC map (the ground-truth one of synthetic data,
or the stage-1 net's estimate from the DP views) followed by layered non-blind deconvolution
(:mod:`defocusgan_hf.deconvolution`). Columns: PSNR, SSIM, MAE, LPIPS (see :mod:`defocusgan_hf.metrics` for
the protocols), for estimated maps with ground truth the CoC error in pixels, and for every map the stage-1
objective itself (Eq. 2's reblur L1: how well that map, reblurring the sharp image with its row's kernels, explains
the blurred one; measurable on DPDD too, where no true map exists). On DPDD the 76 test scenes
are split into indoor (37) and outdoor (39) as in Table 1.

``--kernel_ablation`` is Table 5 on synthetic data: maps from stage-1 nets trained with a fixed Gaussian, a fixed
Butterworth and the learnable kernel, each followed by the same layered Wiener deconvolution (with the kernel
bank that net was trained with: its map's radii are measured in that kernel's units).

Outputs in ``--output_dir``: ``results.md`` (the table printed), ``results.json`` (protocol, settings, command,
means per method and group), ``per_image.csv`` and, on data with true CoC maps, ``psnr_by_coc_range.png`` (PSNR
by true |CoC| range, also in the two first files). Existing files are never replaced without ``--overwrite``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from tqdm.auto import tqdm

from . import __version__
from .deconvolution import DEFAULT_RL_ITERATIONS, DEFAULT_WIENER_BALANCE, layered_deconvolution
from .losses import reblur_loss
from .metrics import (
    DEFAULT_COC_EDGES,
    DPDD_TEST_SIZE,
    METRIC_NAMES,
    Protocol,
    coc_errors,
    dpdd_scene_group,
    get_protocol,
    image_metrics,
    parse_coc_edges,
    pooled_psnr,
    prepare,
    squared_error_by_coc,
    summarize,
)
from .models.blur_kernel import KERNEL_FAMILIES, LearnableBlurKernel, kernel_bank
from .tiling import tiled_apply

OUTPUT_FILES = ("results.md", "results.json", "per_image.csv", "psnr_by_coc_range.png")
DECONV_METHODS = {"wiener": "wiener", "rl": "richardson_lucy"}
# mean_map: one constant, the mean |CoC| of the evaluated set's true maps, everywhere (the baseline a stage-1 map
# must beat: issue #4 asks for half its |CoC| error).
MAP_SOURCES = ("true_map", "estimated_map", "mean_map")
BASELINES = ("input",) + tuple(f"{d}_{m}" for d in DECONV_METHODS for m in MAP_SOURCES)
KERNEL_SUBFOLDER = "blur_kernel"
ABLATION_VARIANTS = ("gaussian", "butterworth", "learnable")
LPIPS_UNAVAILABLE = "LPIPS: unavailable (no weights; pass --lpips_weights FILE.safetensors, see docs/RESULTS.md)"


# ----------------------------------------------------------------------------------------------------------------
# Loading models, kernels and data
# ----------------------------------------------------------------------------------------------------------------


def load_deblur_pipeline(source: str, device: str = "cpu"):
    """A :class:`DefocusDeblurPipeline` from a pipeline folder / Hub id, or from a bare ``DefocusDeblurNet``
    folder (``config.json`` + weights)."""
    from .models.deblur_net import DefocusDeblurNet
    from .pipelines import DefocusDeblurPipeline

    folder = Path(source)
    if folder.is_dir() and not (folder / "model_index.json").is_file():
        sub = "deblur_net" if (folder / "deblur_net" / "config.json").is_file() else None
        pipe = DefocusDeblurPipeline(deblur_net=DefocusDeblurNet.from_pretrained(folder, subfolder=sub))
    else:
        pipe = DefocusDeblurPipeline.from_pretrained(source)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def load_defocus_net(source: str, device: str = "cpu"):
    """A :class:`DualPixelDefocusNet` from its own folder or from a folder holding ``defocus_net/``."""
    from .models.defocus_net import DualPixelDefocusNet

    folder = Path(source)
    if (folder / "defocus_net").is_dir():
        net = DualPixelDefocusNet.from_pretrained(folder, subfolder="defocus_net")
    else:
        net = DualPixelDefocusNet.from_pretrained(source)
    return net.to(device).eval()


def load_kernels(source: str | os.PathLike | None, default_family: str = "butterworth") -> torch.Tensor:
    """Kernel bank ``(S, R + 1, K, K)`` for deconvolution.

    ``source``: ``"butterworth"`` / ``"gaussian"`` (the fixed banks, R = 25); a stage-1 checkpoint folder holding
    ``blur_kernel/`` (a saved :class:`LearnableBlurKernel`, as ``train/train_defocus_map.py`` writes it) or such a
    ``blur_kernel`` folder itself; or a ``.safetensors`` file holding ``kernels`` (a materialised bank, like the
    training script's ``kernels-step-N.safetensors``). ``None``: the fixed bank of ``default_family``.
    """
    if source is None or str(source) in KERNEL_FAMILIES:
        return kernel_bank(family=str(source or default_family))[None]
    path = Path(source)
    if path.is_dir():
        folder = path / KERNEL_SUBFOLDER if (path / KERNEL_SUBFOLDER / "config.json").is_file() else path
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"No learned kernel in '{path}': expected '{KERNEL_SUBFOLDER}/config.json' in it.")
        with torch.no_grad():
            return LearnableBlurKernel.from_pretrained(folder)().float()
    if not path.is_file():
        raise FileNotFoundError(
            f"Kernel source {str(source)!r} is neither 'butterworth', 'gaussian' nor a file or folder."
        )
    with safe_open(str(path), framework="pt") as f:
        if "kernels" not in f.keys():
            raise ValueError(f"'{path}' holds no 'kernels' tensor (S, R+1, K, K); its keys: {sorted(f.keys())}.")
        kernels = f.get_tensor("kernels").float()
    if kernels.dim() == 3:
        kernels = kernels[None]
    if kernels.dim() != 4 or kernels.shape[0] not in (1, 2):
        raise ValueError(f"'{path}': `kernels` must be (R+1, K, K) or (S, R+1, K, K), got {tuple(kernels.shape)}.")
    return kernels


def has_learned_kernel(folder: str | os.PathLike | None) -> bool:
    """Whether ``folder`` is a stage-1 checkpoint with a saved kernel (``blur_kernel/config.json``)."""
    return folder is not None and (Path(folder) / KERNEL_SUBFOLDER / "config.json").is_file()


def load_lpips(weights: Sequence[str] | None, protocol: Protocol, device: str = "cpu"):
    """The protocol's LPIPS from ``weights`` (files or ``org/repo:file``), or ``None`` when none are given."""
    if not weights:
        return None
    from .models.lpips import LPIPS

    return LPIPS.from_pretrained(list(weights), net=protocol.lpips_net).to(device)


@dataclass
class EvalData:
    """Samples to evaluate and how to group them."""

    dataset: Any
    kind: str
    indices: list[int]
    groups: tuple[str, ...] = ("all",)
    group_of: Callable[[int], str] = field(default=lambda index: "all")
    has_coc: bool = False
    has_dp_views: bool = False
    note: str = ""


def open_dataset(kind: str, root: str, need_dp_views: bool = False, max_images: int | None = None) -> EvalData:
    """The evaluation data: ``"synthetic"`` (a validation set folder), ``"dpdd"`` (the 76 full-size test scenes,
    indoor/outdoor) or ``"folder"`` (``root/blurred`` and ``root/sharp``, matched by file name)."""
    from .data import DPDDDataset, PairedFolderDataset, ValidationSet

    if kind == "synthetic":
        dataset = ValidationSet(root)
        data = EvalData(dataset, kind, list(range(len(dataset))), has_coc=True, has_dp_views=True)
    elif kind == "dpdd":
        dataset = DPDDDataset(root, split="test", crop_size=None, with_dp_views=need_dp_views, augment=False)
        data = EvalData(dataset, kind, list(range(len(dataset))), has_dp_views=need_dp_views)
        if len(dataset) == DPDD_TEST_SIZE:
            data.groups, data.group_of = ("indoor", "outdoor", "all"), dpdd_scene_group
        else:
            data.note = (
                f"indoor/outdoor split not applied: it is defined on the {DPDD_TEST_SIZE} DPDD test scenes, "
                f"found {len(dataset)}"
            )
    elif kind == "folder":
        root_path = Path(root)
        dataset = PairedFolderDataset(root_path / "blurred", root_path / "sharp")
        data = EvalData(dataset, kind, list(range(len(dataset))))
    else:
        raise ValueError(f"`dataset` must be 'synthetic', 'dpdd' or 'folder', got {kind!r}.")
    if max_images is not None:
        data.indices = data.indices[:max_images]
    return data


# ----------------------------------------------------------------------------------------------------------------
# Methods
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class Method:
    """One row of the table.

    ``kind``: ``"input"``, ``"model"`` (the generator) or ``"deconv"`` (map + deconvolution). For ``"deconv"``,
    ``map_source`` is ``"true_map"``, ``"estimated_map"`` or ``"mean_map"``, ``defocus_net`` the stage-1 net of an estimated map,
    ``kernels`` the bank ``(S, R + 1, K, K)`` and ``deconv`` ``"wiener"`` or ``"richardson_lucy"``.
    """

    key: str
    label: str
    kind: str
    map_source: str | None = None
    defocus_net: Any = None
    kernels: torch.Tensor | None = None
    deconv: str = "wiener"
    pipeline: Any = None
    details: dict = field(default_factory=dict)


def _as_batch(array: np.ndarray) -> torch.Tensor:
    """``(H, W, C)`` array -> ``(1, C, H, W)`` float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).permute(2, 0, 1)[None]


def estimate_map(net, left: np.ndarray, right: np.ndarray, tile_size: int | None, tile_overlap: int, device: str):
    """Signed CoC map ``(H, W)`` in px from two DP views ``(H, W, 3)``, tiled like the pipeline."""
    dtype = next(net.parameters()).dtype
    with torch.inference_mode():
        coc = tiled_apply(
            lambda a, b: net(a.to(dtype), b.to(dtype)).defocus_map,
            (_as_batch(left), _as_batch(right)),
            1,
            tile_size,
            tile_overlap,
            device,
        )
    return coc[0, 0].numpy()


# ----------------------------------------------------------------------------------------------------------------
# The evaluation loop
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class EvaluationResult:
    """Per-image rows, means per method and group, and everything needed to print and save them."""

    rows: list[dict]
    summary: dict[str, dict[str, dict]]
    methods: list[Method]
    groups: tuple[str, ...]
    protocol: Protocol
    lpips_available: bool
    settings: dict
    notes: list[str]
    # PSNR by true |CoC| range, pooled over the set's pixels (sets with true maps): {"edges", "pixels", "psnr"}.
    coc_ranges: dict | None = None


def map_reblur_l1(sharp: np.ndarray, blurred: np.ndarray, coc: np.ndarray, kernels: torch.Tensor) -> float:
    """Eq. 2 for one map: mean |reblur(sharp, coc) - blurred| (images ``(H, W, 3)`` in [0, 1], ``coc`` ``(H, W)``
    signed px, ``kernels`` ``(S, R + 1, K, K)``): the quantity stage 1 minimises, so the true map's value is what
    a perfect stage-1 net would reach under that kernel."""
    with torch.no_grad():
        return float(reblur_loss(_as_batch(sharp), _as_batch(blurred), _as_batch(coc[..., None]), kernels))


def mean_abs_coc_of(data: EvalData) -> float:
    """Mean |CoC| in px over every pixel of the evaluated samples' true maps."""
    if not data.has_coc:
        raise ValueError(f"A mean-map row needs ground-truth CoC maps, which the {data.kind} data lacks.")
    return float(np.mean([data.dataset.coc(i).abs().numpy().mean() for i in data.indices]))


def evaluate_methods(
    data: EvalData,
    methods: Sequence[Method],
    protocol: str | Protocol = "seed",
    lpips=None,
    tile_size: int | None = None,
    tile_overlap: int = 64,
    device: str = "cpu",
    balance: float = DEFAULT_WIENER_BALANCE,
    num_iter: int = DEFAULT_RL_ITERATIONS,
    progress: bool = True,
    coc_edges: Sequence[float] | None = DEFAULT_COC_EDGES,
) -> EvaluationResult:
    """Run every method on every sample and measure it. ``lpips``: an :class:`~defocusgan_hf.models.lpips.LPIPS`
    with the protocol's backbone, or ``None`` (then no LPIPS column is filled). Where the data has true CoC maps,
    ``coc_edges`` (lower edges, px; ``None`` = off) also splits each method's squared error by true |CoC| range."""
    protocol = get_protocol(protocol)
    rows: list[dict] = []
    estimated_cache: dict[int, np.ndarray] = {}
    # Eq. 2 per map and kernel source: the Wiener and RL rows of one map share it.
    reblur_cache: dict[tuple, float] = {}
    mean_abs_coc = mean_abs_coc_of(data) if any(m.map_source == "mean_map" for m in methods) else None
    by_coc = {m.key: [np.zeros(len(coc_edges)), np.zeros(len(coc_edges))] for m in methods} if coc_edges else {}
    for index in tqdm(data.indices, desc=f"evaluating ({protocol.name} protocol)", disable=not progress):
        sample = data.dataset[index]
        name = str(sample.get("name", f"{index:04d}"))
        group = data.group_of(index)
        sharp = prepare(sample["sharp"], protocol)
        blurred = prepare(sample["blurred"], protocol)
        true_coc = sample["coc"].squeeze().numpy() if "coc" in sample else None
        estimated_cache.clear()
        reblur_cache.clear()
        for method in methods:
            start = time.perf_counter()
            map_values = {}
            if method.kind == "input":
                restored = blurred
            elif method.kind == "model":
                out = method.pipeline(
                    blurred.astype(np.float32),
                    tile_size=tile_size,
                    tile_overlap=tile_overlap,
                    output_type="np",
                    self_ensemble=method.details.get("self_ensemble", False),
                )
                restored = out.images[0]
            else:
                if method.map_source == "true_map":
                    coc = true_coc
                elif method.map_source == "mean_map":
                    coc = np.full_like(true_coc, mean_abs_coc)
                    map_values = coc_errors(coc, true_coc)
                else:  # one map per stage-1 net and image (its time counts for the first row that uses it)
                    key = id(method.defocus_net)
                    if key not in estimated_cache:
                        left, right = prepare(sample["left"], protocol), prepare(sample["right"], protocol)
                        estimated_cache[key] = estimate_map(
                            method.defocus_net, left, right, tile_size, tile_overlap, device
                        )
                    coc = estimated_cache[key]
                    if true_coc is not None:
                        map_values = coc_errors(coc, true_coc)
                restored = layered_deconvolution(blurred, coc, method.kernels, method.deconv, balance, num_iter)
            seconds = time.perf_counter() - start  # the method's own time: the measurements below are not in it
            if method.kind == "deconv":
                reblur_key = (method.map_source, id(method.defocus_net), method.details.get("kernels"))
                if reblur_key not in reblur_cache:
                    reblur_cache[reblur_key] = map_reblur_l1(sharp, blurred, coc, method.kernels)
                map_values["reblur_l1"] = reblur_cache[reblur_key]
            values = image_metrics(restored, sharp, protocol, lpips=None if lpips is None else lpips.distance)
            if by_coc and true_coc is not None:
                sums, counts = squared_error_by_coc(prepare(restored, protocol), sharp, true_coc, coc_edges)
                by_coc[method.key][0] += sums
                by_coc[method.key][1] += counts
            rows.append(
                {"name": name, "group": group, "method": method.key, **values, **map_values, "seconds": seconds}
            )
    groups = data.groups
    summary = {m.key: summarize([r for r in rows if r["method"] == m.key], groups) for m in methods}
    for m in methods:
        for group in groups:
            members = [r["seconds"] for r in rows if r["method"] == m.key and (group == "all" or r["group"] == group)]
            if members:
                summary[m.key][group]["seconds"] = float(np.mean(members))
    settings = {
        "tile_size": tile_size,
        "tile_overlap": tile_overlap,
        "device": device,
        "wiener_balance": balance,
        "rl_iterations": num_iter,
        "num_images": len(data.indices),
        "torch_threads": torch.get_num_threads(),
    }
    notes = [data.note] if data.note else []
    coc_ranges = None
    if by_coc and methods and by_coc[methods[0].key][1].sum() > 0:
        coc_ranges = {
            "edges": [float(e) for e in coc_edges],
            "pixels": [int(c) for c in by_coc[methods[0].key][1]],
            "psnr": {key: pooled_psnr(*pair) for key, pair in by_coc.items()},
        }
    return EvaluationResult(
        rows, summary, list(methods), groups, protocol, lpips is not None, settings, notes, coc_ranges
    )


# ----------------------------------------------------------------------------------------------------------------
# Reporting
# ----------------------------------------------------------------------------------------------------------------


VALUE_FORMATS = {"psnr": "{:.2f}", "ssim": "{:.3f}", "mae": "{:.4f}", "lpips": "{:.3f}", "reblur_l1": "{:.4f}"}


def _fmt(value: float | None, metric: str) -> str:
    if value is None:
        return "–"
    if math.isinf(value):
        return "∞"
    return VALUE_FORMATS.get(metric, "{:.2f}").format(value)


COLUMN_NAMES = {
    "psnr": "PSNR↑",
    "ssim": "SSIM↑",
    "mae": "MAE↓",
    "lpips": "LPIPS↓",
    "coc_mae": "CoC MAE (px)↓",
    "abs_coc_mae": "\\|CoC\\| MAE (px)↓",
    "reblur_l1": "Reblur L1 (Eq. 2)↓",
}


def format_table(result: EvaluationResult, title: str = "") -> str:
    """The Markdown table: methods × metrics; on DPDD with indoor / outdoor column groups first (Table 1)."""
    split = len(result.groups) > 1
    columns = [(g, m) for g in result.groups if g != "all" for m in ("psnr", "ssim", "lpips")] if split else []
    columns += [("all", m) for m in ("psnr", "ssim", "mae", "lpips")]
    if any("coc_mae" in result.summary[m.key]["all"] for m in result.methods):
        columns += [("all", "coc_mae"), ("all", "abs_coc_mae")]
    if any("reblur_l1" in result.summary[m.key]["all"] for m in result.methods):
        columns.append(("all", "reblur_l1"))
    headers = [f"{g.capitalize()} {COLUMN_NAMES[m]}" if split else COLUMN_NAMES[m] for g, m in columns]
    first = result.summary[result.methods[0].key]
    counts = ", ".join(f"{g} {first[g]['count']}" for g in result.groups if g != "all")
    lines = [title, ""] if title else []
    lines.append(f"Protocol **{result.protocol.name}**: {result.protocol.description}.")
    lines.append(f"Images: {first['all']['count']}" + (f" ({counts})" if counts else "") + ".")
    if not result.lpips_available:
        lines.append(LPIPS_UNAVAILABLE + ".")
    lines += [f"Note: {n}." for n in result.notes]
    lines += ["", "| Method | " + " | ".join(headers) + " | s/image |", "|---|" + "---:|" * (len(columns) + 1)]
    for method in result.methods:
        entry = result.summary[method.key]
        cells = [_fmt(entry[g].get(m), m) for g, m in columns] + [_fmt(entry["all"].get("seconds"), "seconds")]
        label = method.label.replace("|", "\\|")  # a "|" in a label would split the Markdown row
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def format_coc_range_table(result: EvaluationResult) -> str:
    """PSNR by true |CoC| range (Markdown), pooled over the pixels of each range; "" without true maps."""
    ranges = result.coc_ranges
    if not ranges:
        return ""
    edges, pixels = ranges["edges"], ranges["pixels"]
    names = [f"[{a:g}, {b:g}) px" for a, b in zip(edges, edges[1:])] + [f"≥ {edges[-1]:g} px"]
    total = max(sum(pixels), 1)
    lines = [
        "",
        "PSNR↑ (dB) by true |CoC| range: 10·log10(1/MSE) over all pixels of the range in the set (pooled, not per image).",
        "",
        "| Method | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
        "| share of pixels | " + " | ".join(f"{100 * c / total:.1f}%" for c in pixels) + " |",
    ]
    for method in result.methods:
        label = method.label.replace("|", "\\|")
        lines.append(f"| {label} | " + " | ".join(_fmt(v, "psnr") for v in ranges["psnr"][method.key]) + " |")
    return "\n".join(lines) + "\n"


def plot_coc_ranges(result: EvaluationResult, path: str | os.PathLike) -> None:
    """Bar chart of the PSNR-by-|CoC|-range table: one group of bars per range, one bar per method (PNG)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ranges = result.coc_ranges
    edges, pixels = ranges["edges"], ranges["pixels"]
    names = [f"{a:g}–{b:g} px" for a, b in zip(edges, edges[1:])] + [f"≥ {edges[-1]:g} px"]
    total = max(sum(pixels), 1)
    labels = [f"{n}\n({100 * c / total:.0f}% of pixels)" for n, c in zip(names, pixels)]
    figure = Figure(figsize=(1.9 * len(names) + 2, 3.6), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    width = 0.8 / len(result.methods)
    for i, method in enumerate(result.methods):
        values = [np.nan if v is None or math.isinf(v) else v for v in ranges["psnr"][method.key]]
        axes.bar(np.arange(len(names)) + (i - (len(result.methods) - 1) / 2) * width, values, width, label=method.label)
    axes.set_xticks(np.arange(len(names)), labels, fontsize=8)
    axes.set_ylabel("PSNR (dB, pooled)")
    axes.set_xlabel("true |CoC| radius")
    finite = [v for m in result.methods for v in ranges["psnr"][m.key] if v is not None and not math.isinf(v)]
    if finite:
        axes.set_ylim(min(finite) - 2, max(finite) + 1)
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize=7, loc="upper right")
    axes.set_title(f"PSNR by defocus ({result.protocol.name} protocol)", fontsize=9)
    figure.tight_layout()
    figure.savefig(path)


def check_outputs(output_dir: str | os.PathLike, overwrite: bool) -> list[Path]:
    """The output paths; a ``FileExistsError`` naming them if any exists and ``overwrite`` is off."""
    paths = [Path(output_dir) / name for name in OUTPUT_FILES]
    existing = [str(p) for p in paths if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"Output file(s) {existing} already exist; pass --overwrite to replace them.")
    return paths


def write_outputs(
    result: EvaluationResult, output_dir: str | os.PathLike, table: str, info: dict, overwrite: bool = False
) -> list[Path]:
    """Write ``results.md``, ``results.json`` and ``per_image.csv``; returns their paths."""
    md_path, json_path, csv_path, plot_path = check_outputs(output_dir, overwrite)
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(table + f"\nCommand: `{info['command']}`\n")
    payload = {
        **info,
        "protocol": result.protocol.to_dict(),
        "lpips_available": result.lpips_available,
        "settings": result.settings,
        "notes": result.notes,
        "methods": {m.key: {"label": m.label, **m.details} for m in result.methods},
        "results": result.summary,
        "psnr_by_coc_range": result.coc_ranges,
        "table_markdown": table,
    }
    json_path.write_text(json.dumps(payload, indent=2, allow_nan=True) + "\n")
    fields = ["name", "group", "method", *METRIC_NAMES, "seconds"]
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in result.rows:
            writer.writerow({k: row.get(k, "") for k in fields})
    written = [md_path, json_path, csv_path]
    if result.coc_ranges:
        plot_coc_ranges(result, plot_path)
        written.append(plot_path)
    elif plot_path.exists():  # --overwrite of an earlier run with true maps: its plot no longer matches
        plot_path.unlink()
    return written


# ----------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="defocusgan-eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--dataset", choices=["synthetic", "dpdd", "folder"], default="synthetic", help="What to evaluate on.")
    add(
        "--root",
        default="data/synthetic_val",
        help="Validation-set folder (synthetic), DPDD root (dd_dp_dataset_canon or its parent), or a folder with "
        "blurred/ and sharp/ (folder).",
    )
    add("--model", default=None, help="Pipeline folder or Hub id (or a DefocusDeblurNet folder) to evaluate.")
    add("--model_label", default=None, help="Row label of --model (default: 'DefocusGAN (<folder name>)').")
    add(
        "--self_ensemble",
        action="store_true",
        help="Add a row for --model with the x8 geometric self-ensemble (flips and quarter turns averaged; 8x the time).",
    )
    add(
        "--defocus_model",
        default=None,
        help="Stage-1 checkpoint (DualPixelDefocusNet folder, or a folder with defocus_net/) for *_estimated_map; "
        "default: the --model pipeline's defocus_net when it has one.",
    )
    add(
        "--deconv_kernels",
        default=None,
        help="Kernels for deconvolving estimated maps: butterworth, gaussian, a stage-1 folder (with blur_kernel/) "
        "or a .safetensors file with a 'kernels' tensor (default: the kernel learned with the stage-1 net - the "
        "pipeline's blur_kernel or the checkpoint's blur_kernel/ - else butterworth). True maps use the fixed "
        "Butterworth bank.",
    )
    add(
        "--protocol",
        choices=["seed", "peer"],
        default="seed",
        help="seed: 16-bit floats, LPIPS-SqueezeNet; peer: 8-bit, LPIPS-AlexNet (see defocusgan_hf/metrics.py).",
    )
    add(
        "--baselines",
        default="auto",
        help=f"Comma-separated rows besides --model, from {', '.join(BASELINES)}; 'auto' = input, plus the "
        "true-map and estimated-map Wiener rows where the data and a stage-1 net allow; 'none' for no baseline.",
    )
    add(
        "--lpips_weights",
        default=None,
        help="LPIPS weights for the protocol's backbone: .safetensors file(s), comma-separated (lpips-package or "
        "torchvision layout), or org/repo:file.safetensors. Without them LPIPS is reported as unavailable.",
    )
    add("--wiener_balance", type=float, default=DEFAULT_WIENER_BALANCE, help="Wiener regularisation weight.")
    add("--rl_iterations", type=int, default=DEFAULT_RL_ITERATIONS, help="Richardson–Lucy iterations.")
    add("--kernel_ablation", action="store_true", help="Table 5 on the synthetic set (needs --defocus_models).")
    add(
        "--defocus_models",
        default=None,
        help="Kernel ablation: gaussian=PATH,butterworth=PATH,learnable=PATH (stage-1 checkpoints per kernel).",
    )
    add(
        "--coc_ranges",
        default=",".join(f"{e:g}" for e in DEFAULT_COC_EDGES),
        help="Lower edges (px) of the true-|CoC| ranges of the PSNR-by-defocus table (data with true maps); "
        "'none' to leave it out.",
    )
    add("--tile_size", type=int, default=0, help="Tile side for the nets (0 = whole images, the paper's protocol).")
    add("--tile_overlap", type=int, default=64, help="Tile overlap in pixels.")
    add("--max_images", type=int, default=None, help="Evaluate only the first N images (quick checks).")
    add("--device", default="cpu", help="Torch device for the nets and LPIPS.")
    add("--num_threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice).")
    add("--output_dir", required=True, help="Folder for results.md, results.json and per_image.csv.")
    add("--overwrite", action="store_true", help="Replace existing output files.")
    add("--no_progress", action="store_true", help="No progress bar.")
    return parser.parse_args(argv)


def _parse_pairs(text: str) -> dict[str, str]:
    pairs = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in item:
            raise ValueError(f"Expected NAME=PATH items separated by commas, got {item!r} in {text!r}.")
        key, value = item.split("=", 1)
        pairs[key.strip()] = value.strip()
    return pairs


def _stage1_kernels(checkpoint: str | None, override: str | None, module=None) -> tuple[torch.Tensor, str]:
    """Kernels for deconvolving a stage-1 map, and where they came from: ``override`` if given, else the kernel
    learned with that map (a pipeline's ``blur_kernel`` component ``module``, or ``checkpoint/blur_kernel/``),
    else the fixed Butterworth bank."""
    if override:
        return load_kernels(override), str(override)
    if module is not None:
        with torch.no_grad():
            return module().float().cpu(), "the pipeline's blur_kernel"
    if has_learned_kernel(checkpoint):
        return load_kernels(checkpoint), f"kernel saved with {checkpoint}"
    return load_kernels("butterworth"), "fixed butterworth bank"


def reference_map_method(key: str) -> Method:
    """The row of a map that needs no stage-1 net (``"<deconv>_true_map"`` or ``"<deconv>_mean_map"``), deconvolved
    with the fixed Butterworth bank."""
    deconv_key, map_source = key.split("_", 1)
    deconv = DECONV_METHODS[deconv_key]
    deconv_label = "Wiener" if deconv == "wiener" else "Richardson–Lucy"
    map_label = "True map" if map_source == "true_map" else "Mean |CoC| map (constant)"
    return Method(
        key,
        f"{map_label} + {deconv_label}",
        "deconv",
        map_source,
        kernels=load_kernels("butterworth"),
        deconv=deconv,
        details={"kernels": "fixed butterworth bank"},
    )


def build_methods(args: argparse.Namespace, data: EvalData) -> list[Method]:
    """The rows asked for by ``--model`` / ``--baselines`` (or ``--kernel_ablation``)."""
    methods: list[Method] = []
    if args.kernel_ablation:
        if not args.defocus_models:
            raise ValueError("--kernel_ablation needs --defocus_models gaussian=PATH,butterworth=PATH,learnable=PATH.")
        variants = _parse_pairs(args.defocus_models)
        unknown = sorted(set(variants) - set(ABLATION_VARIANTS))
        if unknown:
            raise ValueError(f"Unknown kernel variant(s) {unknown} in --defocus_models; use {list(ABLATION_VARIANTS)}.")
        methods.append(Method("input", "Input (blurred)", "input"))
        methods.append(
            Method(
                "wiener_true_map",
                "True map + Wiener (Butterworth bank)",
                "deconv",
                "true_map",
                kernels=load_kernels("butterworth"),
                details={"kernels": "fixed butterworth bank"},
            )
        )
        methods.append(reference_map_method("wiener_mean_map"))
        for variant in ABLATION_VARIANTS:
            if variant not in variants:
                continue
            path = variants[variant]
            if args.deconv_kernels:
                kernels, origin = load_kernels(args.deconv_kernels), str(args.deconv_kernels)
            elif has_learned_kernel(path):
                kernels, origin = load_kernels(path), f"kernel saved with {path}"
            elif variant != "learnable":
                kernels, origin = load_kernels(variant), f"fixed {variant} bank"
            else:
                raise FileNotFoundError(
                    f"The learnable-kernel checkpoint '{path}' has no '{KERNEL_SUBFOLDER}/' folder."
                )
            methods.append(
                Method(
                    f"ablation_{variant}",
                    f"{variant.capitalize()} kernel: map + Wiener",
                    "deconv",
                    "estimated_map",
                    load_defocus_net(path, args.device),
                    kernels,
                    details={"defocus_model": path, "kernels": origin},
                )
            )
        return methods

    pipeline = load_deblur_pipeline(args.model, args.device) if args.model else None
    defocus_source, kernel_module = args.defocus_model, None
    defocus_net = load_defocus_net(defocus_source, args.device) if defocus_source else None
    if defocus_net is None and pipeline is not None and getattr(pipeline, "defocus_net", None) is not None:
        defocus_net, defocus_source = pipeline.defocus_net, f"{args.model} (defocus_net)"
        kernel_module = getattr(pipeline, "blur_kernel", None)
    requested = args.baselines.strip().lower()
    if requested == "auto":
        keys = ["input"]
        if data.has_coc:
            keys.append("wiener_true_map")
        if defocus_net is not None and data.has_dp_views:
            keys.append("wiener_estimated_map")
    elif requested == "none":
        keys = []
    else:
        keys = [k.strip() for k in requested.split(",") if k.strip()]
    for key in keys:
        if key not in BASELINES:
            raise ValueError(f"Unknown baseline {key!r}; choose from {list(BASELINES)} (or 'auto', 'none').")
        if key == "input":
            methods.append(Method("input", "Input (blurred)", "input"))
            continue
        deconv_key, map_source = key.split("_", 1)
        deconv = DECONV_METHODS[deconv_key]
        deconv_label = "Wiener" if deconv == "wiener" else "Richardson–Lucy"
        if map_source in ("true_map", "mean_map"):
            if not data.has_coc:
                raise ValueError(f"Baseline {key!r} needs ground-truth CoC maps, which the {data.kind} data lacks.")
            methods.append(reference_map_method(key))
        else:
            if defocus_net is None:
                raise ValueError(
                    f"Baseline {key!r} needs a stage-1 net: pass --defocus_model (or a pipeline with one)."
                )
            if not data.has_dp_views:
                raise ValueError(f"Baseline {key!r} needs dual-pixel views, which the {data.kind} data lacks.")
            kernels, origin = _stage1_kernels(args.defocus_model, args.deconv_kernels, kernel_module)
            methods.append(
                Method(
                    key,
                    f"Stage-1 map + {deconv_label}",
                    "deconv",
                    "estimated_map",
                    defocus_net,
                    kernels,
                    deconv=deconv,
                    details={"defocus_model": defocus_source, "kernels": origin},
                )
            )
    if pipeline is not None:
        label = args.model_label or f"DefocusGAN ({Path(str(args.model)).name or args.model})"
        params = sum(p.numel() for p in pipeline.deblur_net.parameters())
        details = {"model": args.model, "params_millions": round(params / 1e6, 3)}
        methods.append(Method("model", label, "model", pipeline=pipeline, details=details))
        if args.self_ensemble:
            methods.append(
                Method(
                    "model_x8",
                    f"{label} + x8 self-ensemble",
                    "model",
                    pipeline=pipeline,
                    details={**details, "self_ensemble": True},
                )
            )
    if not methods:
        raise ValueError("Nothing to evaluate: pass --model and/or --baselines.")
    return methods


def _wants_dp_views(args: argparse.Namespace) -> bool:
    """Whether DP views must be loaded (DPDD only loads them when an estimated map is asked for or possible)."""
    if args.kernel_ablation or "estimated" in args.baselines:
        return True
    has_stage1 = args.defocus_model is not None or (
        args.model is not None and (Path(args.model) / "defocus_net").is_dir()
    )
    return args.baselines.strip().lower() == "auto" and has_stage1


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    try:
        check_outputs(args.output_dir, args.overwrite)
        protocol = get_protocol(args.protocol)
        coc_edges = None if args.coc_ranges.strip().lower() == "none" else parse_coc_edges(args.coc_ranges)
        if args.kernel_ablation and args.dataset != "synthetic":
            raise ValueError("--kernel_ablation runs on the synthetic validation set (--dataset synthetic).")
        lpips = load_lpips(args.lpips_weights.split(",") if args.lpips_weights else None, protocol, args.device)
        data = open_dataset(args.dataset, args.root, need_dp_views=_wants_dp_views(args), max_images=args.max_images)
        methods = build_methods(args, data)
        result = evaluate_methods(
            data,
            methods,
            protocol,
            lpips,
            tile_size=args.tile_size or None,
            tile_overlap=args.tile_overlap,
            device=args.device,
            balance=args.wiener_balance,
            num_iter=args.rl_iterations,
            progress=not args.no_progress,
            coc_edges=coc_edges,
        )
    except (ValueError, OSError) as error:  # bad flags, missing/unreadable data or weights (incl. FileExistsError)
        print(f"defocusgan-eval: error: {error}", file=sys.stderr)
        return 2
    title = (
        f"### {'Kernel ablation (Table 5)' if args.kernel_ablation else 'Deblurring'} on {args.dataset} ({args.root})"
    )
    table = format_table(result, title) + format_coc_range_table(result)
    print(table)
    info = {
        "command": "python -m defocusgan_hf.evaluate " + shlex.join(sys.argv[1:] if argv is None else list(argv)),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "dataset": {"kind": args.dataset, "root": str(args.root)},
        "package_version": __version__,
        "torch_version": torch.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "kernel_ablation": bool(args.kernel_ablation),
    }
    written = write_outputs(result, args.output_dir, table, info, overwrite=args.overwrite)
    print("Wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
