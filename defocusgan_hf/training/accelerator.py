"""The Accelerator of a training run, its Hub-folder save/load hooks, and the wall-clock budget."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import ProjectConfiguration, broadcast, set_seed

logger = get_logger(__name__)


def make_accelerator(args: argparse.Namespace) -> Accelerator:
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    output_dir = Path(args.output_dir)
    accelerator = Accelerator(
        # Without a GPU, processes started by `accelerate launch --multi_gpu` (or torchrun) must be told to use the
        # CPU, or each would train alone instead of joining one gloo process group.
        cpu=not torch.cuda.is_available(),
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=args.report_to,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
    )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    logger.info(accelerator.state, main_process_only=False)
    set_seed(args.seed)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
    return accelerator


def register_hub_folder_hooks(accelerator: Accelerator, names: list[str]) -> None:
    """Make ``save_state`` write each prepared model as a Hub folder (``save_pretrained``) named after it, in
    ``accelerator.prepare`` order, and ``load_state`` read them back, as diffusers' examples do: a checkpoint's
    ``deblur_net/`` loads directly with ``from_pretrained``."""

    def save_hook(models, weights, output_dir):
        if accelerator.is_main_process:
            for name, model in zip(names, models):
                accelerator.unwrap_model(model).save_pretrained(Path(output_dir) / name)
        weights.clear()  # accelerate must not also save them as model_N.safetensors

    def load_hook(models, input_dir):
        for name, model in zip(names, list(models)):
            target = accelerator.unwrap_model(model)
            loaded = type(target).from_pretrained(Path(input_dir) / name)
            target.load_state_dict(loaded.state_dict())
        models.clear()

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


class TimeBudget:
    """``--max_train_minutes``: whether the run's wall-clock budget is spent, the same answer on every process (the
    main process's clock decides and broadcasts it, so no process leaves the DDP loop alone and hangs the others)."""

    def __init__(self, minutes: float | None, accelerator: Accelerator):
        if minutes is not None and not minutes > 0:
            raise ValueError(f"--max_train_minutes must be > 0, got {minutes}.")
        self.seconds = None if minutes is None else 60.0 * minutes
        self.accelerator = accelerator
        self.started = time.time()

    def spent(self) -> bool:
        if self.seconds is None:
            return False
        flag = torch.tensor([float(time.time() - self.started >= self.seconds)], device=self.accelerator.device)
        if self.accelerator.num_processes > 1:
            flag = broadcast(flag, from_process=0)
        return bool(flag.item())
