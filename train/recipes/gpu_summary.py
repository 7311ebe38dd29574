#!/usr/bin/env python
"""The end of a GPU recipe (gpu_stage1.sh, gpu_stage2.sh): ``summary.json`` and ``eval.md`` in ``--out``, and the
throughput printed.

    python train/recipes/gpu_summary.py --recipe gpu_stage2 --run_dir runs/gpu_stage2 --out $OUT --seconds 540

``summary.json``: the machine, the run's steps and minutes, its training throughput (``images_per_second`` of the
last logged step: images of the training steps per second spent in them, data rendering included, validation and
checkpoints not), the last validation's figures, and each evaluation's figures on the scenes kept for choosing.
``eval.md``: the evaluations' tables one after the other, or why there are none.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--recipe", required=True, help="The recipe's name (gpu_stage1, gpu_stage2).")
    add("--run_dir", required=True, help="The run's output_dir (train_log.jsonl, eval_*/).")
    add("--out", required=True, help="Where summary.json and eval.md go.")
    add("--seconds", type=float, required=True, help="Wall-clock seconds of the recipe so far.")
    add("--real_root", default="", help="The real captures used (empty: none were found).")
    add("--setting", action="append", default=[], help="KEY=VALUE recorded in the summary (repeatable).")
    return parser.parse_args(argv)


def read_log(path: Path) -> tuple[dict, dict]:
    """The last row with training losses and the last with validation figures of a train_log.jsonl."""
    train, validation = {}, {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if "images_per_second" in row:
            train = row
        elif any(k.startswith(("val/", "real/")) for k in row):
            validation = row
    return train, validation


def device_name() -> str:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({platform.machine()})"


def main(argv=None) -> dict:
    args = parse_args(argv)
    run, out = Path(args.run_dir), Path(args.out)
    train, validation = read_log(run / "train_log.jsonl")
    summary = {
        "recipe": args.recipe,
        "device": device_name(),
        "settings": dict(s.split("=", 1) for s in args.setting),
        "real_root": args.real_root or None,
        "steps": train.get("step"),
        "recipe_minutes": round(args.seconds / 60, 2),
        "images_per_second": train.get("images_per_second"),
        "steps_per_second": train.get("steps_per_second"),
        "last_loss": train.get("loss/total"),
        "validation": {k: v for k, v in validation.items() if k != "step"},
        "evaluations": {},
    }
    tables = []
    for folder in sorted(run.glob("eval_*")):
        results = folder / "results.json"
        if not results.is_file():
            continue
        payload = json.loads(results.read_text())
        summary["evaluations"][folder.name] = {
            "command": payload.get("command"),
            "subsets": payload.get("subsets"),
            "results": payload.get("results"),
            "dual_pixel": (payload.get("dual_pixel") or {}).get("summary"),
        }
        tables.append(f"## {folder.name}\n\n" + (folder / "results.md").read_text())
    if not tables:
        reason = "no real captures were found" if not args.real_root else "the evaluation was skipped (EVAL=0)"
        tables.append(f"No evaluation: {reason}. Its commands: eval_commands.sh in run.tar.gz.\n")
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=True) + "\n")
    (out / "eval.md").write_text("\n".join(tables))
    rate = summary["images_per_second"]
    print(
        f"{args.recipe}: {summary['steps']} steps on {summary['device']}, "
        f"images/s: {'n/a' if rate is None else f'{rate:.1f}'}, recipe {summary['recipe_minutes']} min"
    )
    return summary


if __name__ == "__main__":
    main()
