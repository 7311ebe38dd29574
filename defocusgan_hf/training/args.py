"""Command-line flags both training scripts spell the same way (diffusers' examples conventions), and the
synthetic-data and model-config options they turn into."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def add_synthetic_data_args(parser: argparse.ArgumentParser, default_config: str) -> None:
    """``--data_config`` (``varied`` or ``eq3``, optionally ``+CHANGE...``) and ``--clean_data``, spelt the same by
    both stages."""
    from ..data.config import ENGINE_CHANGES

    def data_config(value: str) -> str:
        from ..data import DualPixelConfig

        try:
            DualPixelConfig.named(value)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        return value

    parser.add_argument(
        "--data_config",
        default=default_config,
        type=data_config,
        help=f"Synthetic data (default here: {default_config}): 'varied' (ours: every PSF family, random DP masks and "
        "split offsets, highlights, grey and in-focus scenes; DualPixelConfig.varied) or 'eq3' (the first engine: "
        "the paper's kernel only, which the models also assume), optionally followed by engine changes joined with "
        f"'+' (DualPixelConfig.named; e.g. varied+in_focus_highlights), from: {', '.join(ENGINE_CHANGES)}.",
    )
    parser.add_argument(
        "--clean_data",
        action="store_true",
        help="Synthetic data without noise, JPEG, vignetting, gamma/exposure change.",
    )
    parser.add_argument(
        "--cuhk_in_focus_root",
        default=None,
        help="Where the CUHK photos of the cuhk_in_focus_sources engine change are (images/ and blur_masks/; "
        "default: the change's own, ../shared/real/cuhk). Only with a --data_config that has that change.",
    )


def synthetic_config(args: argparse.Namespace, **changes):
    """The :class:`~defocusgan_hf.data.DualPixelConfig` that ``--data_config`` / ``--clean_data`` /
    ``--cuhk_in_focus_root`` ask for."""
    from ..data import DualPixelConfig

    config = DualPixelConfig.named(args.data_config, **changes)
    root = getattr(args, "cuhk_in_focus_root", None)
    if root is not None:
        if config.cuhk_in_focus_root is None:
            raise ValueError(
                f"--cuhk_in_focus_root {root} needs a --data_config with cuhk_in_focus_sources, "
                f"got {args.data_config!r}."
            )
        config = config.replace(cuhk_in_focus_root=str(root))
    return config.clean() if args.clean_data else config


def add_common_args(parser: argparse.ArgumentParser, default_output_dir: str, default_lr: float) -> None:
    """The flags both stages spell the same way (diffusers' examples conventions)."""
    add = parser.add_argument
    add("--output_dir", default=default_output_dir, help="Where checkpoints, logs and the final pipeline folder go.")
    add(
        "--init_from",
        default=None,
        help="Pipeline folder or Hub id whose weights start this run (training accumulates across sessions).",
    )
    add(
        "--dataset",
        default="synthetic",
        choices=["synthetic", "dpdd"],
        help="Training data: the synthetic DP engine or DPDD.",
    )
    add("--dpdd_root", default=None, help="Path of dd_dp_dataset_canon/ (with --dataset dpdd).")
    add(
        "--image_dir",
        default=None,
        help="Extra folder of sharp images for the synthetic engine (besides the built-in sources).",
    )
    add(
        "--validation_dir",
        default="data/synthetic_val",
        help="Fixed validation set written by defocusgan-make-valset (empty string: no validation). With --dataset "
        "dpdd, DPDD's own validation split (val_c) is used instead (and an empty string still turns it off).",
    )
    add("--num_validation_samples", type=int, default=8, help="How many validation samples each validation uses.")
    add("--resolution", type=int, default=512, help="Training crop size in pixels (paper: 512).")
    add("--train_batch_size", type=int, default=4, help="Batch size per process (paper: 4).")
    add("--max_train_steps", type=int, default=100_000, help="Total optimisation steps.")
    add(
        "--max_train_minutes",
        type=float,
        default=None,
        help="Wall-clock budget of this run, minutes from its first step: the step that passes it becomes the last "
        "(logged, checkpointed, validated, exported as at --max_train_steps). For lent GPUs and sessions that end.",
    )
    add("--learning_rate", type=float, default=default_lr, help="Adam learning rate.")
    add("--adam_beta1", type=float, default=0.9)
    add("--adam_beta2", type=float, default=0.999)
    add("--adam_weight_decay", type=float, default=0.0)
    add("--max_grad_norm", type=float, default=1.0, help="Gradient clipping (0 disables).")
    add("--lr_warmup_steps", type=int, default=0, help="Linear learning-rate warm-up steps.")
    add("--gradient_accumulation_steps", type=int, default=1)
    add(
        "--mixed_precision",
        default="no",
        choices=["no", "fp16", "bf16"],
        help="Autocast of the trained nets' forward passes (accelerate; bf16 needs no loss scaling). The data engine, "
        "the reblur and FFT losses and the exported weights stay in fp32 (or --save_dtype).",
    )
    add(
        "--channels_last",
        action="store_true",
        help="Keep the trained nets' weights and their input batches in torch.channels_last memory format (faster "
        "convolutions on tensor-core GPUs, with --mixed_precision bf16 above all), in training and validation alike; "
        "checkpoints and exports are written in the ordinary layout.",
    )
    add("--report_to", default=None, help="Tracker: tensorboard, wandb, all; none by default.")
    add("--logging_steps", type=int, default=50, help="Log losses every N steps.")
    add("--checkpointing_steps", type=int, default=1000, help="Save a resumable checkpoint-N every N steps.")
    add("--checkpoints_total_limit", type=int, default=3, help="Keep at most this many checkpoint-N folders.")
    add("--resume_from_checkpoint", default=None, help='A checkpoint-N folder, or "latest".')
    add("--validation_steps", type=int, default=1000, help="Validate (metrics + images) every N steps.")
    add(
        "--save_dtype",
        default="fp32",
        choices=["fp32", "fp16"],
        help="Precision of the final exported networks (from_pretrained upcasts to fp32): fp16 halves the files.",
    )
    add("--push_to_hub", action="store_true", help="Push the final pipeline folder and its model card to the Hub.")
    add("--hub_model_id", default=None, help="Hub repo id for --push_to_hub.")
    add("--seed", type=int, default=0, help="Seed of the model init and of the data stream.")
    add("--dataloader_num_workers", type=int, default=0)
    add(
        "--source_cache_dir",
        default=None,
        help="Draw the procedural sharp sources (dead leaves, text) once into banks of --resolution-px tiles in this "
        "folder (uint16 .npy, memory-mapped, reused by later runs with the same settings and seed) and crop from them: "
        "sources at GPU rates. Default: every crop drawn anew.",
    )
    add(
        "--source_cache_size",
        type=int,
        default=4096,
        help="Tiles per procedural source in --source_cache_dir (each 6 bytes per pixel; the content repeats after "
        "this many, with new flips and colour jitter).",
    )
    add("--num_threads", type=int, default=None, help="torch CPU threads per process (default: torch's choice).")
    add(
        "--use_ema", action="store_true", help="Keep an EMA of the trained net's weights; validation and export use it."
    )
    add("--ema_decay", type=float, default=0.999)


def load_model_config(value: str | None) -> dict:
    """Config overrides from a JSON file path or a JSON string (``None``: none)."""
    if value is None:
        return {}
    path = Path(value)
    return json.loads(path.read_text() if path.is_file() else value)


def memory_format(args: argparse.Namespace) -> torch.memory_format:
    """``torch.channels_last`` with ``--channels_last``, else ``torch.contiguous_format``: what the nets' 4-D
    inputs are made with (``x.contiguous(memory_format=memory_format(args))``)."""
    return torch.channels_last if getattr(args, "channels_last", False) else torch.contiguous_format
