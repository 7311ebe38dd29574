"""``defocusgan-eval --dataset real``: models on real captures (:mod:`.real_captures`), as a report.

    defocusgan-eval --dataset real --root ../shared/real/dpdd_gif --model checkpoints/defocusgan-synthetic \\
        --subset "held out=07,08,09,10,11,12,13" --output_dir eval/real_dpdd_scenes
    defocusgan-eval --dataset real --root ../shared/real/cuhk --max_images 40 --model ... --output_dir eval/real_cuhk

Rows: the input itself, ``--model`` (and ``--extra_models``, ``--self_ensemble``), and each scene folder's reference
outputs (e.g. DPDNet, which sees both DP views). Every block of the table names the set, its layout and the
protocol. Outputs: ``results.md``, ``results.json``, ``per_image.csv`` and ``contact_sheet.png`` (input | the
model's output | ground truth, full frame and the crop the model changes most, for the first
``--contact_sheet_images`` images).

With ``--dual_pixel``, the stage-1 net's map of each scene's DP views is checked too: on scene folders with a
relative ``defocus_map.png`` (Pixel 4) by its rank agreement with that map beside the per-pixel DP-view search and
a constant map (:mod:`.real_dual_pixel_ranked`), per scene and per subset; on the others (DPDD GIF) by the reblur
L1 and the sign flip of :mod:`.real_dual_pixel`. Either way ``dual_pixel_<scene>.png`` per scene.

    defocusgan-eval --dataset real --dual_pixel --root ../shared/real/pixel4 --model checkpoints/defocusgan-synthetic \
        --subset choose=001,002,003,004 --subset held_out=005,006,007,008 --output_dir eval/real_pixel4_dual_pixel
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .contact_sheets import contact_sheet
from .methods import load_deblur_pipeline
from .rank_agreement import DEFAULT_RANK_STRIDE
from .real_captures import (
    RealScene,
    detect_layout,
    evaluate_real,
    load_masked_photos,
    load_scenes,
    reference_rows,
    rows_as_dicts,
    summarise,
)
from .real_dual_pixel import evaluate_dual_pixel_scene, summarise_dual_pixel, write_dual_pixel_figures
from .real_dual_pixel_ranked import evaluate_ranked_scene, format_ranked_table, summarise_ranked, write_ranked_figures

REAL_OUTPUT_FILES = ("results.md", "results.json", "per_image.csv", "contact_sheet.png")
# with --dual_pixel, also dual_pixel_<scene>.png per scene (replaced like the others only with --overwrite)
PROTOCOL = (
    "8- or 16-bit files read as float in [0, 1] (grey copied to RGB); PSNR = skimage "
    "peak_signal_noise_ratio(data_range=1) per image, averaged; SSIM = skimage structural_similarity(data_range=1, "
    "channel_axis=2)"
)


def protocol(shift_tolerance: int) -> str:
    """:data:`PROTOCOL` and how frames are aligned: whole frames, or the best integer shift within ±s px."""
    if not shift_tolerance:
        return PROTOCOL + "; whole frames, no border crop"
    return (
        PROTOCOL + f"; shift-tolerant: the best integer shift of the output (and, alike, of the input) within "
        f"±{shift_tolerance} px, a border of max(8, {shift_tolerance}) px cut, SSIM and the colour-matched PSNR at "
        "that shift"
    )


def add_real_args(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--erosion", type=int, default=15, help="Real masked photos: px by which the in-focus mask is eroded.")
    add(
        "--subset",
        action="append",
        default=[],
        help='Real scenes: an extra block over some scenes, "NAME=00,01,..." (repeatable), e.g. the scenes that '
        "no checkpoint was chosen on.",
    )
    add(
        "--shift_tolerance",
        type=int,
        default=0,
        help="Real scenes: score PSNR at the best integer shift within ±PX px (border max(8, PX) cut), for ground "
        "truth registered to about a pixel (the Pixel 4 scenes: 2). 0: whole frames.",
    )
    add(
        "--extra_models",
        action="append",
        default=None,
        help="Real data: more rows, LABEL=PATH,LABEL=PATH (pipeline folders); may be repeated, each use adds rows.",
    )
    add("--contact_sheet_images", type=int, default=8, help="Real data: images on the contact sheet (0: none).")
    add(
        "--dual_pixel",
        action="store_true",
        help="Real scenes with dp_a/dp_b views: also evaluate --model's stage-1 net (reblur L1 against the best "
        "constant map and the per-pixel search, sign flip on swapping the views) and draw dual_pixel_<scene>.png.",
    )
    add(
        "--dp_one_order",
        action="store_true",
        help="With --dual_pixel: the net's map from one view order only (predict_defocus_map(symmetric=False)) "
        "instead of the pipeline's default, which takes both orders so that swapping the views flips the sign.",
    )
    add(
        "--dp_linear",
        choices=["auto", "true", "false"],
        default="auto",
        help="With --dual_pixel on scenes with defocus_map.png: whether the DP views are linear light (then "
        "gamma-encoded, x ** (1/2.2), before the net). auto: detected per scene from blurred.png ((L + R) / 2 in "
        "linear light, the power mean in gamma), else taken as gamma-encoded; said in dual_pixel_convention.",
    )
    add(
        "--rank_stride",
        type=int,
        default=DEFAULT_RANK_STRIDE,
        help="With --dual_pixel on scenes with defocus_map.png: compare the maps on every Nth pixel of every Nth "
        "row (after resizing to the reference map's size).",
    )


def parse_extra_models(value: str | Sequence[str] | None) -> dict[str, str]:
    """``--extra_models`` ``"LABEL=PATH,LABEL=PATH"`` (or a list of such strings, one per use of the flag) as
    ``{label: path}`` (``None`` or empty: none). A label given twice is refused."""
    models = {}
    for text in [value] if isinstance(value, str) else value or []:
        for pair in text.split(","):
            if pair.strip():
                label, sep, path = pair.partition("=")
                if not sep:
                    raise ValueError(f"--extra_models must be LABEL=PATH pairs, got {pair!r}.")
                if label.strip() in models:
                    raise ValueError(f"--extra_models names {label.strip()!r} twice.")
                models[label.strip()] = path.strip()
    return models


def _restorer(pipe, tile_size: int | None, tile_overlap: int, self_ensemble: bool = False):
    def restore(image: np.ndarray) -> np.ndarray:
        out = pipe(image, tile_size=tile_size, tile_overlap=tile_overlap, output_type="np", self_ensemble=self_ensemble)
        return out.images[0]

    return restore


def _identity(image: np.ndarray) -> np.ndarray:
    return image


def _parse_subsets(values: Sequence[str]) -> dict[str, list[str]]:
    subsets = {}
    for value in values:
        name, sep, scenes = value.partition("=")
        if not sep or not name.strip() or not scenes.strip():
            raise ValueError(f'--subset must be "NAME=SCENE,SCENE,...", got {value!r}.')
        subsets[name.strip()] = [s.strip() for s in scenes.split(",") if s.strip()]
    return subsets


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and not np.isfinite(value):
        return "∞ (identical)"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _brightness(summary: dict) -> str:
    if summary.get("brightness_shift") is None:
        return "–"
    worst = summary["brightness_shift_worst"]
    return f"{summary['brightness_shift']:+.2f} / {worst:+.2f} ({summary['brightness_shift_worst_image']})"


def format_real_table(
    summaries: dict[str, dict[str, dict]], layout: str, root: str, erosion: int, shift_tolerance: int = 0
) -> str:
    """Markdown: one block per subset; a row per method."""
    lines = []
    for subset, by_method in summaries.items():
        if layout == "scenes":
            lines += [
                f"### Real scenes `{root}`: {subset}",
                "",
                f"Protocol: {protocol(shift_tolerance)}. Sharp-in: each ground truth fed in, PSNR(output, input). "
                "Grey: each input made grey (channel mean), the output's channel spread max_c − min_c in 8-bit levels.",
                "",
                "Gain after colour match: output and input each matched to the ground truth by a per-channel "
                "affine map first (the sharp and blurred frames differ in exposure and colour too): the sharpening "
                "alone. Brightness: mean(output − input) in 8-bit levels, mean over the images / the worst.",
                "",
                "| Method | Images | PSNR ↑ | SSIM ↑ | Gain over input (dB) | Worse than input | Worst gain | "
                "Gain after colour match (dB) | Sharp-in mean / min (dB) ↑ | Grey spread max / mean ↓ | "
                "Brightness mean / worst |",
                "|---|---|---|---|---|---|---|---|---|---|---|",
            ]
            for label, s in by_method.items():
                lines.append(
                    f"| {label} | {s['images']} | {_fmt(s['psnr'])} | {_fmt(s['ssim'], 3)} | {_fmt(s['gain'])} | "
                    f"{_fmt(s['worse'])} | {_fmt(s['worst_gain'])} | {_fmt(s.get('matched_gain'))} | "
                    f"{_fmt(s['sharp_in'])} / {_fmt(s['sharp_in_min'])} | "
                    f"{_fmt(s['grey_spread_max'], 1)} / {_fmt(s['grey_spread_mean'], 2)} | {_brightness(s)} |"
                )
        else:
            lines += [
                f"### Real photos with blur masks `{root}`: {subset}",
                "",
                f"In-focus fidelity: PSNR(output, input) over the mask's in-focus pixels, mask eroded by {erosion} px "
                "(no ground truth exists). Grey and brightness: as for scenes.",
                "",
                "| Method | Images | In-focus PSNR mean / min (dB) ↑ | Grey spread max / mean ↓ | "
                "Brightness mean / worst |",
                "|---|---|---|---|---|",
            ]
            for label, s in by_method.items():
                lines.append(
                    f"| {label} | {s['images']} | {_fmt(s['in_focus'])} / {_fmt(s['in_focus_min'])} | "
                    f"{_fmt(s['grey_spread_max'], 1)} / {_fmt(s['grey_spread_mean'], 2)} | {_brightness(s)} |"
                )
        lines.append("")
    return "\n".join(lines)


def run_real_evaluation(args: argparse.Namespace, info: dict) -> list[Path]:
    """Evaluate, print the table and write the outputs; returns the written paths."""
    output_dir = Path(args.output_dir)
    paths = [output_dir / name for name in REAL_OUTPUT_FILES]
    existing = [str(p) for p in paths if p.exists()]
    if existing and not args.overwrite:
        raise FileExistsError(f"Output file(s) {existing} already exist; pass --overwrite to replace them.")
    layout = detect_layout(args.root)
    if args.dual_pixel and layout != "scenes":
        raise ValueError("--dual_pixel needs scene folders with dp_a.png and dp_b.png.")
    if layout == "scenes":
        scenes: list[RealScene] = load_scenes(args.root, with_dp_views=args.dual_pixel)[: args.max_images]
        subsets = {"all scenes": [s.name for s in scenes], **_parse_subsets(args.subset)}
    else:
        if args.subset:
            raise ValueError("--subset applies to scene folders, not to masked photos.")
        scenes = load_masked_photos(args.root, args.max_images, erosion=args.erosion)
        subsets = {f"first {len(scenes)} photos": [s.name for s in scenes]}
        flagged = [s.name for s in scenes if s.notes]
        if flagged:  # the same photos without those whose mask looks inverted (listed under the table)
            subsets[f"the same without the {len(flagged)} masks that look inverted"] = [
                s.name for s in scenes if not s.notes
            ]
    if args.model is None:
        raise ValueError("--dataset real needs --model (a pipeline folder or Hub id).")
    tile = args.tile_size or None
    label = f"DefocusGAN ({Path(args.model).name})" if args.model_label is None else args.model_label
    models = {label: (args.model, False, False)}  # label -> (source, self-ensemble, bf16)
    if args.self_ensemble:
        models[f"{label} + x8 self-ensemble"] = (args.model, True, False)
    if getattr(args, "bfloat16_row", False):
        models[f"{label} (bf16)"] = (args.model, False, True)
    models.update({label: (path, False, False) for label, path in parse_extra_models(args.extra_models).items()})

    shift = args.shift_tolerance
    if shift < 0:
        raise ValueError(f"--shift_tolerance must be >= 0 px, got {shift}.")
    rows_by_method = {"input": evaluate_real(_identity, scenes, sharp_in=False, grey=False, shift_tolerance=shift)[0]}
    count = min(args.contact_sheet_images, len(scenes))
    sheet_outputs = {}  # the first `count` outputs of every model, for one contact sheet with shared crops
    pipelines = {}  # one load per model folder (the self-ensemble row and --dual_pixel reuse it)
    for label, (source, ensemble, bfloat16) in models.items():
        if (source, bfloat16) not in pipelines:
            pipelines[source, bfloat16] = load_deblur_pipeline(source, args.device, bfloat16)
        restore = _restorer(pipelines[source, bfloat16], tile, args.tile_overlap, ensemble)
        progress = None if args.no_progress else (lambda items, label=label: tqdm(items, desc=label))
        rows, outputs = evaluate_real(restore, scenes, keep_outputs=count > 0, progress=progress, shift_tolerance=shift)
        rows_by_method[label] = rows
        sheet_outputs[label] = outputs[:count]
    if layout == "scenes":
        rows_by_method.update(
            {f"{key} (reference output)": rows for key, rows in reference_rows(scenes, shift).items()}
        )
    dual_pixel = None
    if args.dual_pixel:
        dual_pixel = _dual_pixel_block(args, pipelines[args.model, False], scenes, output_dir, subsets)

    summaries = {
        subset: {label: summarise([r for r in rows if r.name in set(names)]) for label, rows in rows_by_method.items()}
        for subset, names in subsets.items()
    }
    table = format_real_table(summaries, layout, args.root, args.erosion, shift)
    if dual_pixel is not None and dual_pixel["kind"] == "relative_reference":
        table += "\n" + dual_pixel.pop("table_markdown")
    elif dual_pixel is not None:
        table += "\n" + format_dual_pixel_table(dual_pixel["summary"], args.root, dual_pixel["symmetric"])
    notes = {s.name: s.notes for s in scenes if s.notes}
    if notes:
        table += "\nNotes on the data (kept in every figure above):\n\n" + "".join(
            f"- {name}: {'; '.join(text)}\n" for name, text in notes.items()
        )
    print(table)
    output_dir.mkdir(parents=True, exist_ok=True)
    paths[0].write_text(table + f"\nCommand: `{info['command']}`\n")
    payload = {
        **info,
        "layout": layout,
        "protocol": protocol(shift),
        "shift_tolerance_px": shift,
        "erosion_px": args.erosion if layout == "masked_photos" else None,
        "models": {label: source for label, (source, *_) in models.items()},
        "subsets": subsets,
        "results": summaries,
        "dual_pixel": dual_pixel,
        "data_notes": notes,
        "table_markdown": table,
    }
    paths[1].write_text(json.dumps(payload, indent=2, allow_nan=True) + "\n")
    with paths[2].open("w", newline="") as handle:
        fields = [
            "method",
            "name",
            "psnr",
            "psnr_input",
            "gain",
            "matched_gain",
            "ssim",
            "sharp_in_psnr",
            "in_focus_psnr",
            "grey_spread_max",
            "grey_spread_mean",
            "brightness_shift",
            "shift_y",
            "shift_x",
        ]
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for label, rows in rows_by_method.items():
            for row in rows_as_dicts(rows):
                writer.writerow({"method": label, **{k: row.get(k) for k in fields[1:]}})
    written = paths[:3]
    if count > 0:
        written.append(contact_sheet(scenes[:count], sheet_outputs, paths[3]))
    elif paths[3].exists():
        paths[3].unlink()
    return written + ([Path(p) for p in dual_pixel["figures"]] if dual_pixel else [])


def _dual_pixel_block(
    args: argparse.Namespace, pipe, scenes: Sequence[RealScene], output_dir: Path, subsets: dict[str, list[str]]
) -> dict:
    from ..pipelines.loading import has_learned_kernel
    from .methods import load_kernels

    if any(s.dp_views is None for s in scenes):
        raise ValueError("--dual_pixel: every scene folder needs dp_a.png and dp_b.png.")
    if pipe.defocus_net is None:
        raise ValueError(f"--dual_pixel: {args.model} has no defocus_net (stage-1 net).")
    # the kernel learned with the stage-1 net (its map's radii are in that kernel's units), else Eq. 3's fixed bank
    kernels = load_kernels(args.model if has_learned_kernel(args.model) else "butterworth")
    tile = args.tile_size or None
    if all(s.defocus_map is not None for s in scenes):
        return _ranked_block(args, pipe, scenes, output_dir, subsets, kernels)

    def predict(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return pipe.predict_defocus_map(
            a, b, tile_size=tile, tile_overlap=args.tile_overlap, symmetric=not args.dp_one_order
        )[0, ..., 0]

    results, arrays = zip(*(evaluate_dual_pixel_scene(s, predict, kernels) for s in scenes))
    figures = write_dual_pixel_figures(scenes, arrays, results, output_dir, pipe.defocus_net.config.max_coc)
    return {
        "kind": "reblur",
        "symmetric": not args.dp_one_order,
        "summary": summarise_dual_pixel(results),
        "per_scene": [r.to_dict() for r in results],
        "figures": [str(p) for p in figures],
    }


def _ranked_block(
    args: argparse.Namespace,
    pipe,
    scenes: Sequence[RealScene],
    output_dir: Path,
    subsets: dict[str, list[str]],
    kernels,
) -> dict:
    """The stage-1 block of scene folders with a relative ``defocus_map.png`` (:mod:`.real_dual_pixel_ranked`)."""
    from ..models.dual_pixel import dual_pixel_view_kernels

    if args.rank_stride < 1:
        raise ValueError(f"--rank_stride must be >= 1 pixel, got {args.rank_stride}.")
    linear = {"auto": None, "true": True, "false": False}[args.dp_linear]
    tile = args.tile_size or None

    def predict(a: np.ndarray, b: np.ndarray):
        # the views reach the pipeline gamma-encoded already (the scene's tone is decided once, before)
        coc, convention = pipe.predict_defocus_map(
            a, b, tile_size=tile, tile_overlap=args.tile_overlap, symmetric=not args.dp_one_order,
            linear=False, return_convention=True,
        )  # fmt: skip
        return coc[0, ..., 0], convention.to_dict()

    view_kernels = dual_pixel_view_kernels(kernels)
    iterator = scenes if args.no_progress else tqdm(scenes, desc="stage 1 vs defocus_map.png")
    results, arrays = zip(
        *(evaluate_ranked_scene(s, predict, view_kernels, linear, args.rank_stride) for s in iterator)
    )
    summaries = {
        subset: summarise_ranked([r for r in results if r.name in set(names)]) for subset, names in subsets.items()
    }
    figures = write_ranked_figures(arrays, results, output_dir)
    symmetric = not args.dp_one_order
    return {
        "kind": "relative_reference",
        "symmetric": symmetric,
        "rank_stride_px": args.rank_stride,
        "resize": "maps of another size resized to defocus_map.png's by bilinear interpolation (align_corners=False)",
        "dp_linear": args.dp_linear,
        "dual_pixel_convention": {r.name: r.dual_pixel_convention["description"] for r in results},
        "summary": summaries,
        "per_scene": [r.to_dict() for r in results],
        "figures": [str(p) for p in figures],
        "table_markdown": format_ranked_table(results, summaries, args.root, args.rank_stride, symmetric),
    }


def format_dual_pixel_table(summary: dict, root: str, symmetric: bool = True) -> str:
    flip = "–" if summary["sign_flip"] is None else f"{summary['sign_flip']:.1%}"
    return "\n".join(
        [
            f"### Stage 1 on the real DP views of `{root}` ({summary['scenes']} scenes, no true maps)",
            "",
            "Eq. 2 reblur L1 with the pipeline's learned kernel (sharp image reblurred by the map vs the real "
            "blurred image). Best constant: the single radius (either side) that explains each image best. Search: "
            "per-pixel exhaustive search, which sees the sharp image (a bound, not a competitor). Sign flip: among "
            "pixels with |CoC| > 2 px, those whose sign flips when dp_a and dp_b are swapped.",
            "",
            "| Map | Reblur L1 ↓ (mean) | vs best constant (mean of per-image 1 − L1 / L1_constant) |",
            "|---|---|---|",
            f"| stage-1 net ({'both view orders, the default' if symmetric else 'one view order'}) | "
            f"{summary['reblur_l1_net']:.5f} | "
            f"{summary['improvement_over_constant']:+.1%} better |",
            f"| best constant map per image | {summary['reblur_l1_constant']:.5f} | – |",
            f"| per-pixel search (sees the sharp image) | {summary['reblur_l1_search']:.5f} | "
            f"{summary['search_improvement_over_constant']:+.1%} better |",
            "",
            f"Sign flip on swapping the views: {flip}.",
            "",
        ]
    )


__all__ = ["REAL_OUTPUT_FILES", "add_real_args", "format_real_table", "run_real_evaluation"]
