"""Training recipes: ``--recipe NAME`` sets a group of the training scripts' defaults from a JSON file
(``train/configs/<NAME>_<stage>.json``), with lengths given in epochs converted to steps for this run's data.

A recipe file is ``{"description": "...", "values": {flag: value}}``, where a value may be ``{"epochs": e}``: that
flag becomes ``e x steps_per_epoch`` steps, ``steps_per_epoch = ceil(epoch_length / (batch x processes x
accumulation))`` (a DataLoader without ``drop_last``, as the released code's epochs). ``epoch_length`` is the number
of DPDD training images with ``--dataset dpdd``, else ``--epoch_length`` (default 350, DPDD's training split, so that
an epoch of synthetic data is as long). Flags given on the command line always win over the recipe.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import textwrap
from collections.abc import Sequence
from pathlib import Path

DPDD_TRAIN_IMAGES = 350


class Epochs(float):
    """A recipe length in epochs, not yet converted to steps (argparse leaves non-string defaults as they are)."""

    def __repr__(self) -> str:
        return f"Epochs({float(self):g})"


def recipe_names(configs_dir: Path, stage: str) -> list[str]:
    return sorted(p.name[: -len(f"_{stage}.json")] for p in Path(configs_dir).glob(f"*_{stage}.json"))


def load_recipe(recipe: str, configs_dir: Path, stage: str) -> dict:
    """The recipe file of ``recipe``: a name (``<configs_dir>/<recipe>_<stage>.json``) or a path to a JSON file."""
    path = Path(recipe) if recipe.endswith(".json") else Path(configs_dir) / f"{recipe}_{stage}.json"
    if not path.is_file():
        raise SystemExit(
            f"--recipe {recipe}: no {path}; known recipes: {', '.join(recipe_names(configs_dir, stage)) or 'none'}."
        )
    return json.loads(path.read_text())


def describe(recipe: dict) -> str:
    """``flag value`` lines of a recipe, for ``--help``."""
    lines = []
    for key, value in recipe["values"].items():
        shown = f"{value['epochs']:g} epochs" if isinstance(value, dict) else str(value)
        lines.append(f"  --{key} {shown}")
    return "\n".join(lines)


def add_recipe_args(parser: argparse.ArgumentParser, configs_dir: Path, stage: str) -> None:
    """``--recipe`` and ``--epoch_length``; the known recipes and what they set go into the parser's epilog."""
    names = recipe_names(configs_dir, stage)
    parser.add_argument(
        "--recipe",
        default=None,
        help=f"Set defaults from a recipe: {', '.join(names)} (train/configs/<name>_{stage}.json) or a JSON file; "
        "explicit flags override it. Without it the defaults are ours (each flag's help says where the paper differs).",
    )
    parser.add_argument(
        "--epoch_length",
        type=int,
        default=DPDD_TRAIN_IMAGES,
        help="Samples per epoch, for a recipe's lengths in epochs on synthetic data (default: DPDD's 350 training "
        "images). With --dataset dpdd the number of DPDD training images is used.",
    )
    blocks = []
    for name in names:
        recipe = load_recipe(name, configs_dir, stage)
        blocks.append(textwrap.fill(f"--recipe {name}: {recipe['description']}", 110) + "\n" + describe(recipe))
    if blocks:
        parser.epilog = ((parser.epilog or "") + "\n\n" + "\n\n".join(blocks)).strip()


def epoch_length(args: argparse.Namespace) -> int:
    if args.dataset == "dpdd":
        from ..data import DPDDDataset

        if not args.dpdd_root:
            raise SystemExit("--dataset dpdd needs --dpdd_root (the dd_dp_dataset_canon folder).")
        return len(DPDDDataset(args.dpdd_root, split="train", with_dp_views=False))
    return args.epoch_length


def steps_per_epoch(args: argparse.Namespace, num_processes: int | None = None) -> int:
    """Optimisation steps per epoch of this run: ``ceil(epoch_length / (batch x processes x accumulation))``."""
    if num_processes is None:
        num_processes = int(os.environ.get("WORLD_SIZE", "1"))  # set by accelerate launch / torchrun
    samples_per_step = args.train_batch_size * num_processes * args.gradient_accumulation_steps
    return math.ceil(epoch_length(args) / samples_per_step)


def parse_args(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None, configs_dir: Path, stage: str
) -> argparse.Namespace:
    """``parser.parse_args(argv)`` with ``--recipe``'s defaults; lengths in epochs become steps. The steps chosen
    are in ``args.recipe_steps`` (``{flag: steps}``; empty without a recipe)."""
    known, _ = parser.parse_known_args(argv)
    recipe = load_recipe(known.recipe, configs_dir, stage) if known.recipe else {"values": {}}
    dests = {action.dest for action in parser._actions}
    unknown = sorted(set(recipe["values"]) - dests)
    if unknown:
        raise SystemExit(f"--recipe {known.recipe} sets flags this script does not have: {', '.join(unknown)}.")
    parser.set_defaults(**{k: Epochs(v["epochs"]) if isinstance(v, dict) else v for k, v in recipe["values"].items()})
    args = parser.parse_args(argv)
    args.recipe_steps = {}
    in_epochs = {k: v for k, v in vars(args).items() if isinstance(v, Epochs)}
    if in_epochs:
        per_epoch = steps_per_epoch(args)
        for key, epochs in in_epochs.items():
            setattr(args, key, int(round(float(epochs) * per_epoch)))
            args.recipe_steps[key] = getattr(args, key)
        args.recipe_steps["steps_per_epoch"] = per_epoch
    return args
