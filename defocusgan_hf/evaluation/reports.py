"""Reports of an evaluation: the Markdown tables, the PSNR-by-|CoC| chart, and results.md / results.json /
per_image.csv."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import numpy as np

from .metrics import METRIC_NAMES
from .runner import EvaluationResult

OUTPUT_FILES = ("results.md", "results.json", "per_image.csv", "psnr_by_coc_range.png")
LPIPS_UNAVAILABLE = "LPIPS: unavailable (no weights; pass --lpips_weights FILE.safetensors, see docs/RESULTS.md)"


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
        "PSNR↑ (dB) by true |CoC| range: 10·log10(1/MSE) over all pixels of the range in the set "
        "(pooled, not per image).",
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
