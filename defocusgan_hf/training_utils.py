"""What both training scripts share: the standard flags, the Accelerator, Hub-folder checkpoints with rotation,
step-indexed data (exact resume), and model cards. Like ``diffusers.training_utils``: the scripts in ``train/`` import
it (``from defocusgan_hf import training_utils as tu``); nothing else in the package does."""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from accelerate import Accelerator, PartialState
from accelerate.logging import get_logger
from accelerate.utils import ProjectConfiguration, broadcast, set_seed
from torch.utils.data import DataLoader, Dataset, Sampler

logger = get_logger(__name__)


def add_synthetic_data_args(parser: argparse.ArgumentParser, default_config: str) -> None:
    """``--data_config`` (``varied`` or ``eq3``) and ``--clean_data``, spelt the same by both stages."""
    parser.add_argument(
        "--data_config",
        default=default_config,
        choices=["varied", "eq3"],
        help=f"Synthetic data (default here: {default_config}): 'varied' (ours: every PSF family, random DP masks and "
        "split offsets, highlights, grey and in-focus scenes; DualPixelConfig.varied) or 'eq3' (the first engine: "
        "the paper's kernel only, which the models also assume).",
    )
    parser.add_argument(
        "--clean_data",
        action="store_true",
        help="Synthetic data without noise, JPEG, vignetting, gamma/exposure change.",
    )


def synthetic_config(args: argparse.Namespace, **changes):
    """The :class:`~defocusgan_hf.data.DualPixelConfig` that ``--data_config`` / ``--clean_data`` ask for."""
    from .data import DualPixelConfig

    config = DualPixelConfig.named(args.data_config, **changes)
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
    add("--mixed_precision", default="no", choices=["no", "fp16", "bf16"])
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
    add("--num_threads", type=int, default=None, help="torch CPU threads per process (default: torch's choice).")
    add(
        "--use_ema", action="store_true", help="Keep an EMA of the trained net's weights; validation and export use it."
    )
    add("--ema_decay", type=float, default=0.999)


def for_export(model: torch.nn.Module, args: argparse.Namespace) -> torch.nn.Module:
    """The model to ``save_pretrained`` at the end of training: itself, or an fp16 copy (``--save_dtype fp16``)."""
    return copy.deepcopy(model).half() if args.save_dtype == "fp16" else model


EMA_SUBFOLDERS = {"DefocusDeblurNet": "deblur_net_ema", "DualPixelDefocusNet": "defocus_net_ema"}
"""Where a checkpoint keeps the EMA of each trained net: ``<attribute name>_ema/``, a Hub folder."""
EMA_STATE = "ema_state.json"


def make_ema(args: argparse.Namespace, accelerator: Accelerator, model: torch.nn.Module):
    """diffusers' ``EMAModel`` of ``model``'s weights, or None without --use_ema.

    Saved and restored with the checkpoints through accelerate's save/load-state hooks, as diffusers' example
    scripts do: ``checkpoint-N/<name>_ema/`` is a Hub folder of the averaged net (``config.json`` and
    ``diffusion_pytorch_model.safetensors``: it loads with ``from_pretrained``) plus ``ema_state.json`` (decay,
    step count), not a pickle. A checkpoint written before this
    (``custom_checkpoint_0.pkl``) is still read, with ``torch.load(weights_only=True)``.
    """
    if not args.use_ema:
        return None
    from diffusers.training_utils import EMAModel

    unwrapped = accelerator.unwrap_model(model)
    model_cls = type(unwrapped)
    ema = EMAModel(unwrapped.parameters(), decay=args.ema_decay, model_cls=model_cls, model_config=unwrapped.config)
    ema.to(accelerator.device)
    subfolder = EMA_SUBFOLDERS.get(model_cls.__name__, "ema")

    def save_hook(models, weights, output_dir):
        if accelerator.is_main_process:
            averaged = model_cls.from_config(ema.model_config)
            ema.copy_to(averaged.parameters())
            averaged.save_pretrained(Path(output_dir) / subfolder)
            counters = {k: v for k, v in ema.state_dict().items() if k != "shadow_params"}
            (Path(output_dir) / subfolder / EMA_STATE).write_text(json.dumps(counters, indent=2))

    def load_hook(models, input_dir):
        folder, legacy = Path(input_dir) / subfolder, Path(input_dir) / "custom_checkpoint_0.pkl"
        if folder.is_dir():
            averaged = model_cls.from_pretrained(folder)
            state = json.loads((folder / EMA_STATE).read_text())
            state["shadow_params"] = [p.detach().clone() for p in averaged.parameters()]
        elif legacy.is_file():
            logger.warning(f"{input_dir}: reading the EMA from the pickle of an older checkpoint ({legacy.name}).")
            state = torch.load(legacy, map_location="cpu", weights_only=True)
        else:
            raise FileNotFoundError(f"{input_dir} has no EMA weights ({subfolder}/); was it saved without --use_ema?")
        ema.load_state_dict(state)
        ema.to(accelerator.device)

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)
    return ema


@contextmanager
def ema_weights(ema, model: torch.nn.Module):
    """Inside the block ``model`` holds the EMA weights (when ``ema`` is not None); its own come back after."""
    if ema is None:
        yield
        return
    ema.store(model.parameters())
    ema.copy_to(model.parameters())
    try:
        yield
    finally:
        ema.restore(model.parameters())


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


class StepSampler(Sampler[list[int]]):
    """Batches of indices for steps ``start_step, start_step + 1, ...`` of one process.

    Sample ``i`` of a step-indexed dataset is a pure function of ``(seed, i)``, so step ``s`` sees the same
    images whether the run started at 0 or resumed at ``s``, on any number of workers.
    """

    def __init__(self, start_step: int, batch_size: int, process_index: int, num_processes: int, accumulation: int = 1):
        self.start, self.batch, self.rank, self.world, self.accumulation = (
            start_step * accumulation,
            batch_size,
            process_index,
            num_processes,
            accumulation,
        )

    def __iter__(self) -> Iterator[list[int]]:
        micro = self.start
        while True:
            first = (micro * self.world + self.rank) * self.batch
            yield list(range(first, first + self.batch))
            micro += 1

    def __len__(self) -> int:  # an endless stream; DataLoader only needs a number
        return 2**62


class Cycle(Dataset):
    """A finite dataset of ``N`` items seen as an endless, step-indexed one, in epochs of ``N`` samples.

    Sample ``i`` belongs to epoch ``e = i // N``; it is item ``order_e[i % N]`` of ``dataset``, where ``order_e`` is
    a permutation drawn from ``(seed, e)`` (``shuffle``; else the identity), read after ``dataset.set_epoch(e)``
    when the dataset has one (DPDD's random crops and flips depend on the epoch). Everything is a pure function of
    ``(seed, i)``: a run resumed at step ``k`` sees what an uninterrupted run sees, in any DataLoader worker.
    """

    def __init__(self, dataset: Dataset, seed: int = 0, shuffle: bool = True):
        self.dataset, self.seed, self.shuffle = dataset, int(seed), shuffle
        self._order: tuple[int, torch.Tensor] | None = None  # (epoch, permutation) of the last epoch read

    def __len__(self) -> int:
        return 2**62

    def order(self, epoch: int) -> torch.Tensor:
        """The permutation of the dataset's items in ``epoch``."""
        if self._order is None or self._order[0] != epoch:
            size = len(self.dataset)
            if self.shuffle:
                generator = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch * 7919 + 17) % (2**63 - 1))
                permutation = torch.randperm(size, generator=generator)
            else:
                permutation = torch.arange(size)
            self._order = (epoch, permutation)
        return self._order[1]

    def __getitem__(self, index: int):
        epoch, position = divmod(int(index), len(self.dataset))
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        return self.dataset[int(self.order(epoch)[position])]


def load_model_config(value: str | None) -> dict:
    """Config overrides from a JSON file path or a JSON string (``None``: none)."""
    if value is None:
        return {}
    path = Path(value)
    return json.loads(path.read_text() if path.is_file() else value)


def training_dataset(args: argparse.Namespace) -> Dataset:
    """Sharp crops for the synthetic engine (rendered later on the device), or DPDD training crops."""
    if args.dataset == "dpdd":
        from .data import DPDDDataset

        if not args.dpdd_root:
            raise SystemExit("--dataset dpdd needs --dpdd_root (the dd_dp_dataset_canon folder).")
        return Cycle(
            DPDDDataset(args.dpdd_root, split="train", crop_size=args.resolution, seed=args.seed), seed=args.seed
        )
    from .data import SharpImageDataset

    sources = ["skimage", "dead_leaves", "text"] + ([args.image_dir] if args.image_dir else [])
    return SharpImageDataset(sources, resolution=args.resolution, length=2**40, seed=args.seed)


def validation_source(args: argparse.Namespace) -> str:
    """What :func:`validation_samples` reads, in words (for logs and model cards)."""
    if not args.validation_dir:
        return "no validation set"
    if args.dataset == "dpdd":
        return f"DPDD's validation split (val_c, full images) of {args.dpdd_root}"
    return str(args.validation_dir)


def validation_samples(args: argparse.Namespace, dp_views: bool = True) -> list[dict]:
    """The first ``--num_validation_samples`` samples of the validation set (none when ``--validation_dir`` is
    empty): with ``--dataset dpdd`` DPDD's own validation split (``val_c``, full images, no true CoC maps; the
    views only with ``dp_views``), otherwise the synthetic set in ``--validation_dir``."""
    if not args.validation_dir:
        return []
    if args.dataset == "dpdd":
        from .data import DPDDDataset

        if not args.dpdd_root:
            raise SystemExit("--dataset dpdd needs --dpdd_root (the dd_dp_dataset_canon folder).")
        dpdd_val = DPDDDataset(args.dpdd_root, split="val", crop_size=None, with_dp_views=dp_views)
        return [dpdd_val[i] for i in range(min(args.num_validation_samples, len(dpdd_val)))]
    from .data import ValidationSet

    validation_set = ValidationSet(args.validation_dir)
    return [validation_set[i] for i in range(min(args.num_validation_samples, len(validation_set)))]


def step_loader(dataset: Dataset, args: argparse.Namespace, accelerator: Accelerator, start_step: int) -> DataLoader:
    sampler = StepSampler(
        start_step,
        args.train_batch_size,
        accelerator.process_index,
        accelerator.num_processes,
        args.gradient_accumulation_steps,
    )
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=args.dataloader_num_workers,
        persistent_workers=args.dataloader_num_workers > 0,
    )


def step_generator(seed: int, step: int, process_index: int, device: torch.device) -> torch.Generator:
    """A generator for on-device randomness (scene layout, noise) that depends only on the step and the process."""
    generator = torch.Generator(device=device)
    generator.manual_seed((seed * 1_000_003 + step * 7919 + process_index) % (2**63 - 1))
    return generator


def lr_lambda(warmup_steps: int, halving_steps: int):
    """Linear warm-up, then the paper's step decay: halve every ``halving_steps`` (0 = constant)."""

    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
        decay = 0.5 ** (step // halving_steps) if halving_steps > 0 else 1.0
        return warm * decay

    return factor


def log_jsonl(accelerator: Accelerator, args: argparse.Namespace, logs: dict, step: int) -> None:
    """Trackers get the logs; the main process also appends them to ``<output_dir>/train_log.jsonl``."""
    accelerator.log(logs, step=step)
    if accelerator.is_main_process:
        with open(Path(args.output_dir) / "train_log.jsonl", "a") as handle:
            handle.write(json.dumps({"step": step, **logs}) + "\n")


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def write_model_card(
    path: Path,
    *,
    title: str,
    description: str,
    metrics: dict[str, float],
    command: str,
    tags: list[str],
    base_model: str | None = None,
) -> None:
    """README.md in the Hub format (YAML card data + Markdown) for a trained pipeline folder."""
    from huggingface_hub import ModelCard, ModelCardData

    card_data = ModelCardData(
        library_name="defocusgan_hf",
        license="apache-2.0",
        pipeline_tag="image-to-image",
        tags=["defocus-deblurring", "dual-pixel", "image-restoration", *tags],
        base_model=base_model,
    )
    lines = "\n".join(
        f"| {k} | {v:.4g} |" for k, v in metrics.items() if isinstance(v, int | float) and math.isfinite(v)
    )
    content = (
        f"---\n{card_data.to_yaml()}\n---\n\n# {title}\n\n{description}\n\n"
        f"## Validation metrics\n\n| metric | value |\n|---|---|\n{lines}\n\n"
        f"## Reproduce\n\n```bash\n{command}\n```\n"
    )
    ModelCard(content).save(path / "README.md")
