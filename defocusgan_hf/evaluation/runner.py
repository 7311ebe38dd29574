"""The evaluation loop: every method on every sample, measured with the protocol's metrics."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from ..pipelines import DefocusDeblurPipeline
from ..training.losses import reblur_loss
from .datasets import EvalData, mean_abs_coc_of
from .deconvolution import DEFAULT_RL_ITERATIONS, DEFAULT_WIENER_BALANCE, layered_deconvolution
from .methods import Method
from .metrics import (
    DEFAULT_COC_EDGES,
    Protocol,
    coc_errors,
    get_protocol,
    image_metrics,
    pooled_psnr,
    prepare,
    squared_error_by_coc,
    summarize,
)


def load_lpips(weights: Sequence[str] | None, protocol: Protocol, device: str = "cpu"):
    """The protocol's LPIPS from ``weights`` (files or ``org/repo:file``), or ``None`` when none are given."""
    if not weights:
        return None
    from ..perceptual.lpips import LPIPS

    return LPIPS.from_pretrained(list(weights), net=protocol.lpips_net).to(device)


def map_only_pipeline(defocus_net) -> DefocusDeblurPipeline:
    """The pipeline's map-only path for a stage-1 net: tiled like the pipeline, because it is the pipeline."""
    pipeline = DefocusDeblurPipeline(deblur_net=None, defocus_net=defocus_net)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def _as_batch(array: np.ndarray) -> torch.Tensor:
    """``(H, W, C)`` array -> ``(1, C, H, W)`` float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).permute(2, 0, 1)[None]


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
    """Run every method on every sample and measure it. ``lpips``: an :class:`~defocusgan_hf.perceptual.lpips.LPIPS`
    with the protocol's backbone, or ``None`` (then no LPIPS column is filled). Where the data has true CoC maps,
    ``coc_edges`` (lower edges, px; ``None`` = off) also splits each method's squared error by true |CoC| range."""
    protocol = get_protocol(protocol)
    rows: list[dict] = []
    estimated_cache: dict[int, np.ndarray] = {}
    map_pipelines = {id(m.defocus_net): map_only_pipeline(m.defocus_net) for m in methods if m.defocus_net is not None}
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
                        coc = map_pipelines[key].predict_defocus_map(left, right, tile_size, tile_overlap)
                        estimated_cache[key] = coc[0, ..., 0]
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
