#!/usr/bin/env python
"""Tables 4 and 6 of the paper as runs: train every arm at the same number of steps, evaluate each with
``defocusgan-eval`` on the same data, and collect one Markdown table.

    python train/ablations.py --output_dir runs/ablations --max_train_steps 20000 -- --vgg_weights vgg19.safetensors

Arms (stage 2, ``train/train_defocusgan.py``; everything after ``--`` goes to every arm):

- Table 4: ``full`` (the model), ``no_guidance``, ``no_rcab``, ``single_scale`` (its full-scale DGB as deep as the
  multi-scale net's deepest level: the parameter counts, in the table, stay comparable);
- Table 6: ``adv_defocus`` and ``adv_uniform``, the defocus-weighted against the plain adversarial loss
  (``--lambda_adv`` > 0 in both; Table 4's arms use the shared flags as given).

Each arm trains into ``<output_dir>/<arm>/`` and is evaluated into ``<output_dir>/<arm>/eval/`` (and, with
``--real_eval_root``, on real captures into ``<output_dir>/<arm>/eval_real/``: a synthetic figure never stands alone,
e.g. ``--real_eval_root ../shared/real/dpdd_gif``); an arm whose pipeline
and evaluation exist is not trained again (rerun with the same flags to finish an interrupted sweep). The table goes to
``<output_dir>/ablations.md`` and ``ablations.json``, with the budget (steps, batch, resolution, data) in its caption.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARMS: dict[str, tuple[str, list[str]]] = {
    "full": ("Table 4", []),
    "no_guidance": ("Table 4", ["--no_guidance"]),
    "no_rcab": ("Table 4", ["--no_rcab"]),
    "single_scale": ("Table 4", ["--single_scale"]),
    "adv_defocus": ("Table 6", ["--adversarial_loss", "defocus"]),
    "adv_uniform": ("Table 6", ["--adversarial_loss", "uniform"]),
}
METRICS = ("psnr", "ssim", "mae", "lpips")
REAL_METRICS = ("gain", "worse", "sharp_in", "grey_spread_max")  # defocusgan-eval --dataset real, over all scenes


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--output_dir", required=True, help="One folder per arm, and ablations.md / ablations.json.")
    add("--max_train_steps", type=int, required=True, help="Steps of every arm (equal budgets).")
    add("--arms", default=",".join(ARMS), help=f"Comma-separated arms to run, from {', '.join(ARMS)}.")
    add("--lambda_adv", type=float, default=0.002, help="β of the Table 6 arms (paper: 0.002).")
    add(
        "--eval_dataset",
        default="synthetic",
        choices=["synthetic", "dpdd"],
        help="defocusgan-eval --dataset for every arm (dpdd: the test split of --eval_root).",
    )
    add("--eval_root", default="data/synthetic_val", help="defocusgan-eval --root (the same data for every arm).")
    add("--eval_max_images", type=int, default=None, help="defocusgan-eval --max_images (quick checks).")
    add(
        "--real_eval_root",
        default=None,
        help="Also evaluate every arm with defocusgan-eval --dataset real on this folder of real scenes "
        "(blurred.png / sharp.png per scene, e.g. ../shared/real/dpdd_gif): gain over the input, scenes made worse, "
        "sharp-in fidelity and grey spread go into the table beside the synthetic figures.",
    )
    add("--launcher", default=sys.executable, help="What runs the training script (e.g. 'accelerate launch').")
    add("train_args", nargs=argparse.REMAINDER, help="After --: flags for train/train_defocusgan.py in every arm.")
    args = parser.parse_args(argv)
    args.train_args = [a for a in args.train_args if a != "--"] if args.train_args[:1] == ["--"] else args.train_args
    unknown = [a for a in args.arms.split(",") if a not in ARMS]
    if unknown:
        parser.error(f"unknown arms {unknown}; choose from {', '.join(ARMS)}.")
    return args


def arm_flags(args: argparse.Namespace, arm: str) -> list[str]:
    table, flags = ARMS[arm]
    if table == "Table 6":
        flags = [*flags, "--lambda_adv", str(args.lambda_adv)]
    return [*args.train_args, *flags, "--max_train_steps", str(args.max_train_steps)]


def run(command: list[str]) -> None:
    print("+ " + shlex.join(command), flush=True)
    subprocess.run(command, cwd=ROOT, check=True)


def evaluation_command(dataset: str, root: str, pipeline: Path, arm: str, output_dir: Path) -> list[str]:
    """``defocusgan-eval`` of one arm's pipeline on one set, written into ``output_dir`` (replacing it)."""
    return [sys.executable, "-m", "defocusgan_hf.evaluation", "--dataset", dataset, "--root", root, "--model",
            str(pipeline), "--model_label", arm, "--output_dir", str(output_dir),
            "--overwrite", "--no_progress"]  # fmt: skip


def train_and_evaluate(args: argparse.Namespace, arm: str) -> dict:
    folder = Path(args.output_dir) / arm
    pipeline, evaluation = folder / "pipeline", folder / "eval" / "results.json"
    if not (pipeline / "model_index.json").is_file():
        resume = ["--resume_from_checkpoint", "latest"] if list(folder.glob("checkpoint-*")) else []
        script = str(ROOT / "train" / "train_defocusgan.py")
        run([*shlex.split(args.launcher), script, "--output_dir", str(folder), *arm_flags(args, arm), *resume])
    if not evaluation.is_file():
        command = evaluation_command(args.eval_dataset, args.eval_root, pipeline, arm, folder / "eval")
        command += ["--baselines", "none"]
        if args.eval_max_images:
            command += ["--max_images", str(args.eval_max_images)]
        run(command)
    results = json.loads(evaluation.read_text())
    (key,) = results["methods"]  # --baselines none: the arm's model only
    from defocusgan_hf.models import DefocusDeblurNet

    net = DefocusDeblurNet.from_pretrained(pipeline, subfolder="deblur_net")
    row = {
        "arm": arm,
        "table": ARMS[arm][0],
        "flags": shlex.join(ARMS[arm][1]),
        "parameters": sum(p.numel() for p in net.parameters()),
        **{m: results["results"][key]["all"].get(m) for m in METRICS},  # over all images (LPIPS: with weights)
    }
    if args.real_eval_root:
        row.update({f"real_{m}": value for m, value in evaluate_real(args, arm, pipeline, folder).items()})
    return row


def evaluate_real(args: argparse.Namespace, arm: str, pipeline: Path, folder: Path) -> dict:
    """``defocusgan-eval --dataset real`` of one arm (reused when its results exist): :data:`REAL_METRICS`."""
    evaluation = folder / "eval_real" / "results.json"
    if not evaluation.is_file():
        command = evaluation_command("real", args.real_eval_root, pipeline, arm, folder / "eval_real")
        run([*command, "--contact_sheet_images", "0"])
    results = json.loads(evaluation.read_text())
    (subset,) = [name for name in results["results"] if name.startswith("all")]
    return {m: results["results"][subset][arm].get(m) for m in REAL_METRICS}


def markdown(rows: list[dict], caption: str) -> str:
    def fmt(value, digits):
        return "n/a" if value is None or value != value else f"{value:.{digits}f}"

    real = "real_gain" in rows[0]
    header = "| table | arm | flags | parameters | PSNR | SSIM | MAE | LPIPS |"
    rule = "|---|---|---|---:|---:|---:|---:|---:|"
    if real:
        header += " real gain (dB) | real scenes worse | real sharp-in (dB) | real grey spread |"
        rule += "---:|---:|---:|---:|"
    lines = [caption, "", header, rule]
    for r in rows:
        line = (
            f"| {r['table']} | {r['arm']} | `{r['flags'] or '(none)'}` | {r['parameters'] / 1e6:.3f}M | "
            f"{fmt(r['psnr'], 2)} | {fmt(r['ssim'], 4)} | {fmt(r['mae'], 4)} | {fmt(r['lpips'], 4)} |"
        )
        if real:
            line += (
                f" {fmt(r['real_gain'], 2)} | {r['real_worse']} | {fmt(r['real_sharp_in'], 2)} | "
                f"{fmt(r['real_grey_spread_max'], 1)} |"
            )
        lines.append(line)
    return "\n".join(lines) + "\n"


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = [train_and_evaluate(args, arm) for arm in args.arms.split(",")]
    caption = (
        f"Ablations (Tables 4 and 6) at {args.max_train_steps} steps per arm, evaluated with defocusgan-eval on "
        f"{args.eval_dataset} `{args.eval_root}`"
        + (f" (first {args.eval_max_images} images)" if args.eval_max_images else "")
        + (f" and on the real scenes `{args.real_eval_root}` (all of them)" if args.real_eval_root else "")
        + f"; shared training flags: `{shlex.join(args.train_args) or '(defaults)'}`."
    )
    table = markdown(rows, caption)
    (out / "ablations.md").write_text(table)
    (out / "ablations.json").write_text(json.dumps({"caption": caption, "rows": rows}, indent=2) + "\n")
    print(table)
    return rows


if __name__ == "__main__":
    main()
