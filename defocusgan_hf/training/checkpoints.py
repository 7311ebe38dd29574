"""A run's folder: resumable ``checkpoint-N`` folders (atomic, rotated), resume discovery, the JSONL log cut
back on resume, and the precision of the exported nets."""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import shutil
from pathlib import Path

import torch
from accelerate import Accelerator, PartialState
from accelerate.logging import get_logger

logger = get_logger(__name__)


def check_output_dir(args: argparse.Namespace) -> None:
    """Refuse to start a fresh run on top of an earlier run's checkpoints (nothing a user made is overwritten)."""
    if args.resume_from_checkpoint is None and list_checkpoints(args.output_dir):
        raise SystemExit(
            f"{args.output_dir} already holds checkpoints; pass --resume_from_checkpoint latest to continue that run, "
            "or choose another --output_dir."
        )


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """The ``checkpoint-N`` folders of a run, oldest first (complete or not; see :func:`is_complete`)."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and re.fullmatch(r"checkpoint-\d+", p.name)]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def is_complete(checkpoint: Path) -> bool:
    """Whether a checkpoint folder was written to the end: ``step.json`` is the last file :func:`save_checkpoint`
    writes (checkpoints are also renamed into place only when complete, so this catches older or copied ones)."""
    try:
        return isinstance(json.loads((Path(checkpoint) / "step.json").read_text())["step"], int)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def resolve_resume(args: argparse.Namespace) -> Path | None:
    """The checkpoint to resume from: ``--resume_from_checkpoint`` as given, or the newest *complete* one for
    "latest" (incomplete ones are skipped with a warning). The run's ``train_log.jsonl`` is cut back to that
    checkpoint's step (see :func:`truncate_log`), so a resumed run does not log the same steps twice."""
    if args.resume_from_checkpoint is None:
        return None
    state = PartialState()  # the process's accelerate state (made by the Accelerator already, in the scripts)
    if args.resume_from_checkpoint == "latest":
        path = None
        for candidate in reversed(list_checkpoints(args.output_dir)):
            if is_complete(candidate):
                path = candidate
                break
            logger.warning(f"Skipping {candidate}: incomplete (no step.json; the save was interrupted).")
        if path is None:
            return None
    else:
        path = Path(args.resume_from_checkpoint)
        if not path.is_dir():
            raise SystemExit(f"--resume_from_checkpoint {path} is not a checkpoint folder.")
        if not is_complete(path):
            raise SystemExit(f"--resume_from_checkpoint {path} is incomplete (no step.json): its save was interrupted.")
    if state.is_main_process:
        truncate_log(args.output_dir, checkpoint_step(path))
    return path


def truncate_log(output_dir: str | os.PathLike, step: int) -> int:
    """Keep the rows of ``<output_dir>/train_log.jsonl`` up to ``step`` (a resumed run logs the later ones again);
    the rows cut go to ``train_log.superseded.jsonl``, nothing is lost. Returns how many were cut."""
    log = Path(output_dir) / "train_log.jsonl"
    if not log.is_file():
        return 0
    kept, cut = [], []
    for line in log.read_text().splitlines():
        try:
            row_step = json.loads(line).get("step", 0)
        except ValueError:
            row_step = 0  # a half-written last line: keep it out of the way, not in the log
            cut.append(line)
            continue
        (cut if row_step > step else kept).append(line)
    if cut:
        with open(Path(output_dir) / "train_log.superseded.jsonl", "a") as handle:
            handle.writelines(line + "\n" for line in cut)
        staging = log.with_name(log.name + ".tmp")
        staging.write_text("".join(line + "\n" for line in kept))
        os.replace(staging, log)
        logger.warning(f"{log}: {len(cut)} rows after step {step} moved to train_log.superseded.jsonl (resumed).")
    return len(cut)


def save_checkpoint(accelerator: Accelerator, args: argparse.Namespace, step: int) -> Path:
    """``accelerator.save_state`` into ``checkpoint-<step>``, atomically, then prune to ``--checkpoints_total_limit``.

    The state is written into ``.checkpoint-<step>.incomplete/``, ``step.json`` last, and renamed to
    ``checkpoint-<step>`` only then; the oldest checkpoints are deleted only after that. A run killed during the
    save leaves the previous checkpoints as they were (and a hidden folder that the next save removes).
    """
    output_dir = Path(args.output_dir)
    path, staging = output_dir / f"checkpoint-{step}", output_dir / f".checkpoint-{step}.incomplete"
    if accelerator.is_main_process:
        for stale in [*output_dir.glob(".checkpoint-*.incomplete"), *output_dir.glob(".checkpoint-*.replaced")]:
            shutil.rmtree(stale)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (staging / "step.json").write_text(json.dumps({"step": step}))
        if path.exists():  # the same step saved again (a resumed run): the old copy goes once the new one is whole
            replaced = output_dir / f".checkpoint-{step}.replaced"
            os.replace(path, replaced)
            os.replace(staging, path)
            shutil.rmtree(replaced)
        else:
            os.replace(staging, path)
        if args.checkpoints_total_limit:
            existing = list_checkpoints(output_dir)
            for old in existing[: max(0, len(existing) - args.checkpoints_total_limit)]:
                shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return path


def checkpoint_step(path: Path) -> int:
    return json.loads((path / "step.json").read_text())["step"]


def log_jsonl(accelerator: Accelerator, args: argparse.Namespace, logs: dict, step: int) -> None:
    """Trackers get the logs; the main process also appends them to ``<output_dir>/train_log.jsonl``."""
    accelerator.log(logs, step=step)
    if accelerator.is_main_process:
        with open(Path(args.output_dir) / "train_log.jsonl", "a") as handle:
            handle.write(json.dumps({"step": step, **logs}) + "\n")


def for_export(model: torch.nn.Module, args: argparse.Namespace) -> torch.nn.Module:
    """The model to ``save_pretrained`` at the end of training: itself, or an fp16 copy (``--save_dtype fp16``)."""
    return copy.deepcopy(model).half() if args.save_dtype == "fp16" else model
