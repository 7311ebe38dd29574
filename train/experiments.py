#!/usr/bin/env python
"""What each data or model change does, measured on real captures at an equal budget: fine-tune the shipped
generator with one named change, evaluate it on the real scenes kept for choosing, and collect one table row.

    python train/experiments.py --output_dir runs/experiments --max_train_steps 400 --jobs 2

Every change trains from the same ``--init_from`` with the same seed, steps, crops, batch and learning-rate
schedule (:data:`BASE_FLAGS`, plus anything after ``--``); only its own flags (:data:`CHANGES`) differ. Each row is
then measured, with ``defocusgan-eval``, on:

- DPDD GIF scenes 00-06 (``--dpdd_root``; gain over the input, scenes worse, sharp-in fidelity, brightness shift);
- Pixel 4 scenes 001-004 (``--pixel4_root``; the same, PSNR tolerant to a ±2 px shift as the data's README asks);
- the do-no-harm battery (``--dataset battery``; the worst category's PSNR(output, input), brightness shift).

Held-out scenes (DPDD 07-13, Pixel 4 005-008) are not evaluated here: nothing is chosen on them. A change whose
pipeline and evaluations exist is not trained or evaluated again (rerun the same command to finish a sweep).
The table goes to ``<output_dir>/experiments.md`` and ``experiments.json``; deltas are against the ``control`` row
(the current engine at the same budget), which is always run.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHANGES: dict[str, tuple[str, list[str]]] = {
    "control": ("the current engine (varied)", []),
    "in_focus_highlights": (
        "30% of samples with in-focus bright discs, lamps and point lights",
        ["--data_config", "varied+in_focus_highlights"],
    ),
    "energy_consistent_highlights": (
        "the blurred frame keeps the clipped target's light",
        ["--data_config", "varied+energy_consistent_highlights"],
    ),
    "brightness_preserving": (
        "model option: the residual's Gaussian low-pass (16 px) removed",
        ["--residual_lowpass_sigma", "16"],
    ),
    "cuhk_in_focus_sources": (
        "in-focus parts of CUHK photos 41-204 as 25% of the sharp content",
        ["--data_config", "varied+cuhk_in_focus_sources"],
    ),
    "phone_processing": (
        "30% of inputs with unsharp-mask halos and/or denoising smear after blur",
        ["--data_config", "varied+phone_processing"],
    ),
    "real_coc_distribution": (
        "CoC scales drawn from the real DPDD GIF maps' histogram (data.config.REAL_COC_HISTOGRAM)",
        ["--data_config", "varied+real_coc_distribution"],
    ),
    "capacity_growth": (
        "model: the lean generator plus a zero-initialised full-resolution refinement level (8 channels)",
        ["--grow_refinement", "8"],
    ),
    # Combinations of the winner (cuhk_in_focus_sources) with the changes that helped one set or the battery:
    "cuhk+brightness_preserving": (
        "cuhk_in_focus_sources, trained with the brightness-preserving output (16 px)",
        ["--data_config", "varied+cuhk_in_focus_sources", "--residual_lowpass_sigma", "16"],
    ),
    "cuhk+in_focus_highlights": (
        "cuhk_in_focus_sources and in_focus_highlights",
        ["--data_config", "varied+cuhk_in_focus_sources+in_focus_highlights"],
    ),
    "cuhk+more_in_focus_scenes": (
        "cuhk_in_focus_sources, and 30% of scenes all in focus (varied: 12%): more samples to leave alone",
        ["--data_config", "varied+cuhk_in_focus_sources+more_in_focus_scenes"],
    ),
    "cuhk+more_in_focus+brightness_preserving": (
        "cuhk+more_in_focus_scenes, trained with the brightness-preserving output (16 px)",
        ["--data_config", "varied+cuhk_in_focus_sources+more_in_focus_scenes", "--residual_lowpass_sigma", "16"],
    ),
    "cuhk+energy_consistent": (
        "cuhk_in_focus_sources and energy_consistent_highlights",
        ["--data_config", "varied+cuhk_in_focus_sources+energy_consistent_highlights"],
    ),
    # Round 3 (from the round-2 generator, which already has the 16 px brightness-preserving output):
    "cuhk50+more_in_focus_scenes": (
        "cuhk+more_in_focus_scenes with the CUHK in-focus parts as 50% of the sharp content (not 25%)",
        ["--data_config", "varied+more_cuhk_sources+more_in_focus_scenes"],
    ),
    "cuhk+more_in_focus+fft": (
        "cuhk+more_in_focus_scenes, plus an L1 loss on FFT amplitudes (weight 0.1)",
        ["--data_config", "varied+cuhk_in_focus_sources+more_in_focus_scenes", "--lambda_fft", "0.1"],
    ),
    "cuhk+more_in_focus+fine_patterns": (
        "cuhk+more_in_focus_scenes, and 15% of the other sharp crops dead leaves with gratings up to 0.5 cycles/px "
        "and 2-8 px checkerboards",
        ["--data_config", "varied+cuhk_in_focus_sources+more_in_focus_scenes+fine_pattern_sources"],
    ),
    "cuhk+more_in_focus+eight_bit": (
        "cuhk+more_in_focus_scenes, with target, input and views rounded to 8-bit levels as photo files are",
        ["--data_config", "varied+cuhk_in_focus_sources+more_in_focus_scenes+eight_bit_samples"],
    ),
    "cuhk+more_in_focus+fine_patterns+eight_bit": (
        "the two round-3 changes that helped a do-no-harm figure together: fine patterns (sharp-in) and eight-bit "
        "samples (CUHK's worst photo)",
        ["--data_config", "varied+cuhk_in_focus_sources+more_in_focus_scenes+fine_pattern_sources+eight_bit_samples"],
    ),
}
"""Name -> (what it changes, its training flags)."""
BASE_FLAGS = [
    "--init_from", "checkpoints/defocusgan-synthetic", "--data_config", "varied", "--resolution", "256",
    "--train_batch_size", "2", "--learning_rate", "1e-4", "--lr_warmup_steps", "50", "--lambda_perceptual", "0",
    "--lambda_adv", "0", "--guidance_anneal_steps", "0", "--validation_dir", "", "--num_threads", "1",
    "--seed", "25", "--logging_steps", "25",
]  # fmt: skip
"""The flags every row shares (the budget: steps and these), before the row's own."""
DPDD_CHOOSE = "00,01,02,03,04,05,06"
PIXEL4_CHOOSE = "001,002,003,004"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--output_dir", required=True, help="One folder per change, and experiments.md / experiments.json.")
    add("--max_train_steps", type=int, required=True, help="Steps of every row (equal budgets).")
    add("--changes", default=",".join(CHANGES), help=f"Comma-separated changes, from {', '.join(CHANGES)}.")
    add("--jobs", type=int, default=1, help="Rows trained and evaluated at the same time (one thread each).")
    add("--dpdd_root", default=str(ROOT.parent / "shared" / "real" / "dpdd_gif"), help="Real DPDD GIF scenes.")
    add("--pixel4_root", default=str(ROOT.parent / "shared" / "real" / "pixel4"), help="Real Pixel 4 scenes.")
    add("--dpdd_scenes", default=DPDD_CHOOSE, help="DPDD scenes to evaluate (those kept for choosing).")
    add("--pixel4_scenes", default=PIXEL4_CHOOSE, help="Pixel 4 scenes to evaluate (those kept for choosing).")
    add("--no_battery", action="store_true", help="Skip the do-no-harm battery (quick checks).")
    add("--launcher", default=sys.executable, help="What runs the training script (e.g. 'accelerate launch').")
    add("train_args", nargs=argparse.REMAINDER, help="After --: flags for train/train_defocusgan.py in every row.")
    args = parser.parse_args(argv)
    args.train_args = [a for a in args.train_args if a != "--"] if args.train_args[:1] == ["--"] else args.train_args
    names = args.changes.split(",")
    unknown = [n for n in names if n not in CHANGES]
    if unknown:
        parser.error(f"unknown changes {unknown}; choose from {', '.join(CHANGES)}.")
    args.changes = ["control", *[n for n in names if n != "control"]]
    return args


def train_flags(args: argparse.Namespace, change: str) -> list[str]:
    """Every row's flags: the shared ones, ``--`` extras, then the change's own (later flags win in argparse)."""
    return [*BASE_FLAGS, *args.train_args, *CHANGES[change][1], "--max_train_steps", str(args.max_train_steps),
            "--checkpointing_steps", str(args.max_train_steps)]  # fmt: skip


def precision(train_args: list[str]) -> str:
    """The rows' precision in words, from the flags after ``--`` (fp32 unless ``--mixed_precision`` says else)."""
    value = "no"
    for i, arg in enumerate(train_args):
        if arg == "--mixed_precision" and i + 1 < len(train_args):
            value = train_args[i + 1]
        elif arg.startswith("--mixed_precision="):
            value = arg.split("=", 1)[1]
    words = {"no": "fp32", "bf16": "bf16 autocast", "fp16": "fp16 autocast"}.get(value, value)
    return words + (", channels-last" if "--channels_last" in train_args else "")


def run(command: list[str], log: Path | None = None) -> None:
    print("+ " + shlex.join(command), flush=True)
    if log is None:
        subprocess.run(command, cwd=ROOT, check=True)
        return
    with open(log, "a") as handle:
        subprocess.run(command, cwd=ROOT, check=True, stdout=handle, stderr=subprocess.STDOUT)


def train(args: argparse.Namespace, change: str) -> float:
    """Train one row (reused when its pipeline exists); returns the minutes it took (from its log when reused)."""
    folder = Path(args.output_dir) / change
    pipeline, timing = folder / "pipeline", folder / "train_minutes.json"
    if not (pipeline / "model_index.json").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        resume = ["--resume_from_checkpoint", "latest"] if list(folder.glob("checkpoint-*")) else []
        script = str(ROOT / "train" / "train_defocusgan.py")
        started = time.time()
        command = [*shlex.split(args.launcher), script, "--output_dir", str(folder), *train_flags(args, change)]
        run([*command, *resume], log=folder / "train_stdout.log")
        timing.write_text(json.dumps({"minutes": (time.time() - started) / 60}))
    return json.loads(timing.read_text())["minutes"] if timing.is_file() else float("nan")


def evaluate(args: argparse.Namespace, change: str, name: str, extra: list[str]) -> dict:
    """``defocusgan-eval`` of one row on one set (reused when its results exist): the results JSON."""
    folder = Path(args.output_dir) / change
    output = folder / f"eval_{name}"
    if not (output / "results.json").is_file():
        command = [sys.executable, "-m", "defocusgan_hf.evaluation", "--model", str(folder / "pipeline"),
                   "--model_label", change, "--output_dir", str(output), "--overwrite", "--no_progress",
                   "--num_threads", "1", *extra]  # fmt: skip
        run(command, log=folder / "eval_stdout.log")
    return json.loads((output / "results.json").read_text())


def real_figures(results: dict, change: str, subset: str) -> dict:
    summary = results["results"][subset][change]
    return {
        "gain": summary["gain"],
        "worse": summary["worse"],
        "sharp_in": summary["sharp_in"],
        "sharp_in_min": summary["sharp_in_min"],
        "brightness_worst": summary.get("brightness_shift_worst"),
    }


def measure(args: argparse.Namespace, change: str) -> dict:
    """The row of one change: its real-data figures on the sets kept for choosing, and the battery's."""
    real = ["--dataset", "real", "--contact_sheet_images", "0"]
    dpdd = evaluate(args, change, "dpdd", [*real, "--root", args.dpdd_root, "--subset", f"choose={args.dpdd_scenes}"])
    pixel4 = evaluate(
        args,
        change,
        "pixel4",
        [*real, "--root", args.pixel4_root, "--shift_tolerance", "2", "--subset", f"choose={args.pixel4_scenes}"],
    )
    row = {"change": change, "what": CHANGES[change][0], "flags": shlex.join(CHANGES[change][1])}
    row.update({f"dpdd_{k}": v for k, v in real_figures(dpdd, change, "choose").items()})
    row.update({f"pixel4_{k}": v for k, v in real_figures(pixel4, change, "choose").items()})
    if not args.no_battery:
        battery = evaluate(args, change, "battery", ["--dataset", "battery"])
        row.update(battery_figures(battery, change))
    return row


def battery_figures(results: dict, change: str) -> dict:
    """The battery's worst category (lowest mean PSNR(output, input)) and its worst |brightness shift|."""
    categories = results["results"][change]["categories"]
    worst = min(categories, key=lambda c: categories[c]["psnr_mean"])
    shifts = [c["shift_worst"] for c in categories.values()]
    return {
        "battery_worst": worst,
        "battery_worst_psnr": categories[worst]["psnr_mean"],
        "battery_brightness_worst": max(shifts, key=abs),
    }


def _fmt(value, digits: int = 2, sign: bool = False) -> str:
    if value is None or value != value:
        return "n/a"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def markdown(rows: list[dict], caption: str) -> str:
    control = rows[0]
    lines = [
        caption,
        "",
        "| change | what | DPDD 00-06 gain (Δ) | worse | Pixel 4 001-004 gain (Δ) | worse | sharp-in (Δ) | "
        "battery worst category | brightness worst (levels) | minutes |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        delta = {k: None if r[k] is None else r[k] - control[k] for k in ("dpdd_gain", "pixel4_gain", "dpdd_sharp_in")}
        shifts = [r.get(k) for k in ("dpdd_brightness_worst", "pixel4_brightness_worst", "battery_brightness_worst")]
        shifts = [s for s in shifts if s is not None]
        battery = (
            f"{r['battery_worst']} {_fmt(r['battery_worst_psnr'])} dB" if r.get("battery_worst") else "not measured"
        )
        lines.append(
            f"| {r['change']} | {r['what']} | {_fmt(r['dpdd_gain'], sign=True)} ({_fmt(delta['dpdd_gain'], sign=True)})"
            f" | {r['dpdd_worse']} | {_fmt(r['pixel4_gain'], sign=True)} ({_fmt(delta['pixel4_gain'], sign=True)}) | "
            f"{r['pixel4_worse']} | {_fmt(r['dpdd_sharp_in'])} ({_fmt(delta['dpdd_sharp_in'], sign=True)}) | "
            f"{battery} | {_fmt(max(shifts, key=abs) if shifts else None, 2, sign=True)} | {_fmt(r['minutes'], 1)} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)

    def train_and_measure(change: str) -> dict:
        minutes = train(args, change)
        return {**measure(args, change), "minutes": minutes}

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        rows = list(pool.map(train_and_measure, args.changes))
    caption = (
        f"What each change does, at an equal budget: every row fine-tunes the same generator for "
        f"{args.max_train_steps} steps in {precision(args.train_args)} "
        f"(flags `{shlex.join([*BASE_FLAGS, *args.train_args])}` plus its own), "
        f"then is measured on the real scenes kept for choosing (DPDD GIF {args.dpdd_scenes}; Pixel 4 "
        f"{args.pixel4_scenes}, PSNR tolerant to ±2 px) and the do-no-harm battery. Gains are over the input in dB, Δ "
        f"against the control row; sharp-in is PSNR(output, input) with DPDD's sharp frames as input; brightness is "
        f"the worst mean(output − input) over every image, in 8-bit levels."
    )
    table = markdown(rows, caption)
    (out / "experiments.md").write_text(table)
    (out / "experiments.json").write_text(json.dumps({"caption": caption, "rows": rows}, indent=2) + "\n")
    print(table)
    return rows


if __name__ == "__main__":
    main()
