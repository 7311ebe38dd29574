#!/usr/bin/env python
"""Stage 1: learn a defocus map from dual-pixel views without ground truth (paper, Eq. 1-5), with Accelerate.

    accelerate launch train/train_defocus_map.py --output_dir runs/defocus-map --resolution 512 --train_batch_size 4

f(left, right) predicts a signed CoC map; the learnable blur kernel reblurs the all-in-focus image layer by layer
with it (Eq. 4) and the loss is L1(reblurred, blurred) + λ·|∇map| (Eq. 2, 5). The map is never compared with a
true map during training; on synthetic data the true map only serves validation (MAE of |CoC| in pixels, since the
combined-image loss cannot tell the two sides of focus apart).

Schedule (paper: "network first with the kernel fixed for 10 epochs, then alternate every 5 epochs until 30"):
steps [0, --net_only_steps) train the net; then blocks of --alternate_steps alternate kernel, net, kernel, ... until
--alternate_until_steps; the net trains alone after that. In a kernel block the net runs without gradients, in a net
block the kernel does, so each block updates exactly one of them. --kernel picks Table 5's variant: learnable
(Butterworth init), or fixed butterworth / gaussian (no kernel blocks).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from accelerate.logging import get_logger
from safetensors.torch import save_file
from torch.utils.data import default_collate
from tqdm.auto import tqdm

from defocusgan_hf.data import DualPixelRenderer
from defocusgan_hf.data.real_dual_pixel import VIEW_ORDERS, RealDualPixelDataset, load_real_dual_pixel
from defocusgan_hf.models import DualPixelDefocusNet, LearnableBlurKernel
from defocusgan_hf.models.reblur import bank_layers
from defocusgan_hf.pipelines.loading import load_defocus_net
from defocusgan_hf.training import recipes
from defocusgan_hf.training.accelerator import TimeBudget, make_accelerator, register_hub_folder_hooks
from defocusgan_hf.training.args import (
    add_common_args,
    add_synthetic_data_args,
    load_model_config,
    memory_format,
    synthetic_config,
)
from defocusgan_hf.training.checkpoints import (
    check_output_dir,
    checkpoint_step,
    for_export,
    log_jsonl,
    resolve_resume,
    save_checkpoint,
)
from defocusgan_hf.training.ema import ema_weights, make_ema
from defocusgan_hf.training.losses import defocus_map_loss, reblur_loss, search_target
from defocusgan_hf.training.model_card import write_model_card
from defocusgan_hf.training.sampling import step_generator, step_loader, training_dataset
from defocusgan_hf.training.schedule import lr_lambda, set_learning_rate
from defocusgan_hf.training.validation import validation_samples, validation_source

logger = get_logger(__name__)
CONFIGS = Path(__file__).resolve().parent / "configs"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, default_output_dir="runs/defocus-map", default_lr=2e-5)
    add = parser.add_argument
    add("--model_config", default=None, help="JSON file or string of DualPixelDefocusNet config overrides.")
    add(
        "--kernel",
        default="learnable",
        choices=["learnable", "butterworth", "gaussian"],
        help="Table 5's kernel variant.",
    )
    add(
        "--kernel_mode",
        default="shared",
        choices=["shared", "bank"],
        help="One shared learnable shape, or a per-radius bank.",
    )
    add(
        "--kernel_learning_rate",
        type=float,
        default=None,
        help="Adam learning rate of the learnable kernel, which has its own optimiser (default: --learning_rate, as "
        "in the released code). The shared kernel is parametrised in log space: at the net's 2e-5 it barely moves in "
        "a 5-epoch block, so give it its own rate (e.g. 1e-3) when the data's PSF differs from the initial shape.",
    )
    add(
        "--net_only_steps",
        type=int,
        default=10_000,
        help="Steps of net-only training first (ours: 10,000 steps; paper: 10 epochs, --recipe paper).",
    )
    add(
        "--alternate_steps",
        type=int,
        default=5_000,
        help="Length of each kernel / net block (ours: 5,000 steps; paper: 5 epochs, --recipe paper).",
    )
    add(
        "--alternate_until_steps",
        type=int,
        default=30_000,
        help="Alternation ends here (ours: 30,000 steps; released code: after the kernel block of epochs 20-24, "
        "i.e. 25 epochs, --recipe paper).",
    )
    add("--lambda_reblur", type=float, default=1.0, help="Weight of the L1 reblur loss (ours: 1; released code: 1000).")
    add("--lambda_smooth", type=float, default=1e-5, help="λ of the gradient prior (paper: 1e-5).")
    add(
        "--smoothness_start_step",
        type=int,
        default=3000,
        help="The prior is off before this step (released code: 3000).",
    )
    add(
        "--lambda_search",
        type=float,
        default=0.0,
        help="Weight of the L1 (per px) to the per-pixel exhaustive search of the reblur loss (not in the paper; "
        "no ground truth either; see losses.defocus_map_loss). 0 = the paper's objective.",
    )
    add("--search_window_sigma", type=float, default=8.0, help="Averaging window of that search, pixels.")
    add(
        "--search_dp_views",
        action="store_true",
        help="Search against the two DP views with half-aperture kernels (signed target: the side of focus too) "
        "instead of the combined image (|CoC| only).",
    )
    add("--max_coc", type=float, default=25.0, help="Largest CoC radius in pixels (paper: 25).")
    add(
        "--real_dp_root",
        action="append",
        default=None,
        help="Folder of real DP captures (scene folders with dp_a/dp_b/sharp/blurred, e.g. ../shared/real/dpdd_gif; "
        "or DPDD's train_l/r/c) mixed into the synthetic batches: unsupervised, no true maps. May be repeated: the "
        "captures of every root are pooled.",
    )
    add(
        "--real_dp_scenes",
        action="append",
        default=None,
        help="Comma-separated scene folders (or DPDD file stems) of --real_dp_root to train on; hold out the rest "
        "and report on those. With several roots: once per root, in the same order (one value applies to all).",
    )
    add(
        "--real_dp_view_order",
        action="append",
        default=None,
        choices=VIEW_ORDERS,
        help="Which view of a scene folder is left: 'detect' (default: the far-focus prior, data/real_dual_pixel.py) "
        "or 'a_left' (dp_a is left, e.g. ../shared/real/pixel4). Once per --real_dp_root in the same order, or once "
        "for all.",
    )
    add(
        "--real_dp_every",
        type=int,
        default=2,
        help="With --real_dp_root, every N-th step trains on a real batch (2: half the steps), the others on "
        "synthetic.",
    )
    add_synthetic_data_args(parser, default_config="eq3")
    recipes.add_recipe_args(parser, CONFIGS, "defocus_map")
    args = recipes.parse_args(parser, argv, CONFIGS, "defocus_map")
    if args.kernel_learning_rate is not None and not args.kernel_learning_rate > 0:
        parser.error(f"--kernel_learning_rate must be > 0, got {args.kernel_learning_rate}.")
    args.real_dp_sources = real_dp_sources(parser, args)
    return args


def real_dp_sources(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[tuple[str, list | None, str]]:
    """``(root, scene names or None, view order)`` per --real_dp_root: --real_dp_scenes and --real_dp_view_order
    are matched to the roots by position, or one value applies to every root; other counts are a parser error."""
    roots = args.real_dp_root or []
    matched = {}
    for flag, default in (("real_dp_scenes", None), ("real_dp_view_order", "detect")):
        values = getattr(args, flag)
        if values is None:
            matched[flag] = [default] * len(roots)
        elif not roots:
            parser.error(f"--{flag} needs --real_dp_root.")
        elif len(values) in (1, len(roots)):
            matched[flag] = values * len(roots) if len(values) == 1 else values
        else:
            parser.error(
                f"--{flag} is given {len(values)} times for {len(roots)} --real_dp_root folders: give it once per "
                "root, in the same order, or once for all of them."
            )
    return [
        (root, scenes.split(",") if scenes else None, order)
        for root, scenes, order in zip(roots, matched["real_dp_scenes"], matched["real_dp_view_order"], strict=True)
    ]


def kernel_lr(args: argparse.Namespace) -> float:
    """The kernel's Adam learning rate: --kernel_learning_rate, else --learning_rate."""
    return args.learning_rate if args.kernel_learning_rate is None else args.kernel_learning_rate


def phase_at(step: int, args) -> str:
    """'net' or 'kernel': which of the two this step trains."""
    if args.kernel != "learnable" or step < args.net_only_steps or step >= args.alternate_until_steps:
        return "net"
    block = (step - args.net_only_steps) // max(args.alternate_steps, 1)
    return "kernel" if block % 2 == 0 else "net"


def kernel_figure(kernels: torch.Tensor, path: Path, radii=(1, 3, 6, 10, 15, 25)) -> None:
    """A picture of the learned kernels: rows = sides of focus, columns = radii (each normalised to its max)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    radii = [r for r in radii if r < kernels.shape[1]]
    fig, axes = plt.subplots(
        kernels.shape[0], len(radii), figsize=(1.8 * len(radii), 2 * kernels.shape[0]), squeeze=False
    )
    for side in range(kernels.shape[0]):
        for col, r in enumerate(radii):
            ax = axes[side][col]
            ax.imshow(kernels[side, r].cpu().numpy(), cmap="magma")
            ax.set_title(f"{'behind' if side == 0 else 'in front'}, r={r}px", fontsize=7)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


class SearchMAECache:
    """The search target's errors (px) on the fixed validation samples, kept with the kernels they were measured
    with: they depend on nothing else, and the kernels change only in kernel blocks, so a net-only run searches once
    instead of at every validation."""

    def __init__(self):
        self.kernels: torch.Tensor | None = None
        self.values: dict[str, float] = {}
        self.searches = 0  # how many times the search ran (tests read it)

    def matches(self, kernels: torch.Tensor) -> bool:
        return self.kernels is not None and self.kernels.shape == kernels.shape and torch.equal(self.kernels, kernels)

    def store(self, kernels: torch.Tensor, values: dict[str, float]) -> None:
        self.kernels, self.values = kernels.detach().clone(), dict(values)
        self.searches += 1


@torch.no_grad()
def log_validation(
    net, kernel, args, accelerator, step: int, validation: list[dict], search_cache: SearchMAECache | None = None
) -> dict[str, float]:
    """Reblur L1, and CoC errors (px) against the true map: |CoC| MAE and signed MAE of the net's map, |CoC| MAE of
    the constant mean map, and those of the search target the training uses (``search_coc`` on the combined image,
    which finds |CoC| only, or with --search_dp_views ``search_signed_coc`` on the views; both see the sharp image).
    Saves the kernels as a picture and as data.

    Each sample's image is convolved with the kernel bank once, for the reblur and the combined-image search alike;
    with a ``search_cache``, the search errors are reused while the kernels are unchanged. Samples without a true
    map (DPDD's validation split, ``--dataset dpdd``) give the reblur L1 only."""
    model, blur = accelerator.unwrap_model(net), accelerator.unwrap_model(kernel)
    was_training = model.training
    model.eval()
    kernels = blur()
    search_cache = search_cache or SearchMAECache()
    has_truth = all("coc" in s for s in validation)
    cached = search_cache.matches(kernels) or not has_truth
    reblur_l1, coc_abs_mae, coc_mae, mean_map_mae, search_abs_mae, search_mae = [], [], [], [], [], []
    mean_abs = float(np.mean([s["coc"].abs().mean() for s in validation])) if has_truth else 0.0
    layout = memory_format(args)
    for sample in validation:
        batch = {k: v[None].to(accelerator.device) for k, v in sample.items() if isinstance(v, torch.Tensor)}
        pred = model(*(batch[k].contiguous(memory_format=layout) for k in ("left", "right"))).defocus_map
        # The combined-image search needs every layer of the bank; without it reblur computes only those the
        # map reaches.
        views = (batch["left"], batch["right"]) if args.search_dp_views else None
        layers = None if cached or views is not None else bank_layers(batch["sharp"], kernels)
        reblur_l1.append(float(reblur_loss(batch["sharp"], batch["blurred"], pred, kernels, layers)))
        if not has_truth:
            continue
        true = batch["coc"]
        coc_abs_mae.append(float((pred.abs() - true.abs()).abs().mean()))
        coc_mae.append(float((pred - true).abs().mean()))
        mean_map_mae.append(float((true.abs() - mean_abs).abs().mean()))
        if cached:
            continue
        searched = search_target(batch["sharp"], batch["blurred"], kernels, args.search_window_sigma, views, layers)
        if views is not None:  # a signed target
            search_mae.append(float((searched - true).abs().mean()))
        search_abs_mae.append(float((searched.abs() - true.abs()).abs().mean()))
    if not cached:  # (never without true maps)
        values = {"val/search_abs_mae_px": float(np.mean(search_abs_mae))}
        if search_mae:
            values["val/search_mae_px"] = float(np.mean(search_mae))
        search_cache.store(kernels, values)
    model.train(was_training)
    folder = Path(args.output_dir) / "validation"
    folder.mkdir(parents=True, exist_ok=True)
    kernel_figure(kernels, folder / f"kernels-step-{step:07d}.png")
    save_file({"kernels": kernels.float().cpu().contiguous()}, str(folder / f"kernels-step-{step:07d}.safetensors"))
    metrics = {"val/reblur_l1": float(np.mean(reblur_l1))}
    if has_truth:
        metrics.update(
            {
                "val/coc_abs_mae_px": float(np.mean(coc_abs_mae)),
                "val/coc_mae_px": float(np.mean(coc_mae)),
                "val/mean_map_abs_mae_px": float(np.mean(mean_map_mae)),
                **search_cache.values,
            }
        )
    logger.info(f"step {step}: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return metrics


def main(args: argparse.Namespace) -> dict[str, float]:
    check_output_dir(args)
    accelerator = make_accelerator(args)
    if args.recipe_steps:
        logger.info(f"--recipe {args.recipe}, in steps: {args.recipe_steps}")
    resume = resolve_resume(args)

    if args.init_from:
        net = load_defocus_net(args.init_from)
    else:
        net = DualPixelDefocusNet(max_coc=args.max_coc, **load_model_config(args.model_config))
    net.train()
    if args.channels_last:  # the net only: the kernel bank is no convolution, and reblur keeps its own layout
        net.to(memory_format=torch.channels_last)
    init = "gaussian" if args.kernel == "gaussian" else "butterworth"
    kernel = LearnableBlurKernel(
        max_radius=int(round(args.max_coc)), mode=args.kernel_mode, init=init, learnable=args.kernel == "learnable"
    )
    learned_kernel = Path(args.init_from) / "blur_kernel" if args.init_from else None
    if args.kernel == "learnable" and learned_kernel is not None and learned_kernel.is_dir():
        # Continue from the kernel learnt with that net, not from Eq. 3's initial shape.
        saved = LearnableBlurKernel.from_pretrained(learned_kernel)
        if (saved.config.mode, saved.config.max_radius) != (args.kernel_mode, kernel.config.max_radius):
            raise SystemExit(
                f"--init_from's blur_kernel is a {saved.config.mode!r} kernel up to {saved.config.max_radius} px; this "
                f"run asks for {args.kernel_mode!r} up to {kernel.config.max_radius} px (--kernel_mode, --max_coc)."
            )
        kernel.load_state_dict(saved.state_dict())
        logger.info(f"Blur kernel initialised from {learned_kernel}.")
    optimizer_net = torch.optim.Adam(net.parameters(), lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2))
    kernel_params = [p for p in kernel.parameters() if p.requires_grad]
    optimizer_kernel = torch.optim.Adam(
        kernel_params or [torch.nn.Parameter(torch.zeros(1))],
        lr=kernel_lr(args),
        betas=(args.adam_beta1, args.adam_beta2),
    )
    net, kernel, optimizer_net, optimizer_kernel = accelerator.prepare(net, kernel, optimizer_net, optimizer_kernel)
    register_hub_folder_hooks(accelerator, ["defocus_net", "blur_kernel"])
    ema = make_ema(args, accelerator, net)  # of the net; the kernel is small and trains in blocks
    schedule = lr_lambda(args.lr_warmup_steps, 0)

    start_step = 0
    if resume is not None:
        accelerator.load_state(str(resume))
        start_step = checkpoint_step(resume)
    if accelerator.is_main_process:
        accelerator.init_trackers(
            "defocus_map", config={k: v for k, v in vars(args).items() if isinstance(v, int | float | str | bool)}
        )

    renderer = DualPixelRenderer(synthetic_config(args, max_coc=args.max_coc))
    with accelerator.main_process_first():  # one process builds the --source_cache_dir banks, the rest read them
        dataset = training_dataset(args)
    iterator = iter(step_loader(dataset, args, accelerator, start_step))
    real_batch = None
    if args.real_dp_sources:
        captures, described = [], []
        for root, names, view_order in args.real_dp_sources:
            loaded = load_real_dual_pixel(root, names, view_order=view_order)
            prefix = f"{Path(root).name}/" if len(args.real_dp_sources) > 1 else ""
            how = "dp_a taken as left" if view_order == "a_left" else "view order by the far-focus prior"
            described.append(
                ", ".join(f"{prefix}{c.name}{' (views swapped)' if c.swapped else ''}" for c in loaded) + f" ({how})"
            )
            captures += loaded
        logger.info("Real DP captures: " + "; ".join(described) + " (data/real_dual_pixel.py)")
        real_data = RealDualPixelDataset(captures, args.resolution, length=2**40, seed=args.seed)

        def real_batch(step: int) -> dict[str, torch.Tensor]:
            """The real batch of ``step``, fixed by the step and the process (exact on resume)."""
            first = (step * accelerator.num_processes + accelerator.process_index) * args.train_batch_size
            return default_collate([real_data[first + i] for i in range(args.train_batch_size)])

    validation = validation_samples(args)
    search_cache = SearchMAECache()

    progress = tqdm(
        range(start_step, args.max_train_steps),
        initial=start_step,
        total=args.max_train_steps,
        disable=not accelerator.is_local_main_process,
        desc="steps",
    )
    history: dict[str, float] = {}
    step, started, train_seconds = start_step, time.time(), 0.0  # wall clock, and the part spent in training steps
    images_per_step = args.train_batch_size * args.gradient_accumulation_steps * accelerator.num_processes
    layout = memory_format(args)
    budget = TimeBudget(args.max_train_minutes, accelerator)
    while step < args.max_train_steps:
        step_started = time.time()
        phase = phase_at(step, args)
        set_learning_rate(optimizer_net, args.learning_rate * schedule(step))
        smooth = args.lambda_smooth if step >= args.smoothness_start_step else 0.0
        for _ in range(args.gradient_accumulation_steps):
            batch = next(iterator)  # drawn every step, so that resuming replays the same stream
            real = real_batch is not None and step % args.real_dp_every == 0
            if real:
                batch = real_batch(step)
            batch = {k: v.to(accelerator.device) for k, v in batch.items() if isinstance(v, torch.Tensor)}
            if args.dataset == "synthetic" and not real:
                generator = step_generator(args.seed, step, accelerator.process_index, accelerator.device)
                with torch.no_grad():
                    batch = renderer(batch["sharp"], generator)
            with accelerator.accumulate(net, kernel):
                with torch.set_grad_enabled(phase == "net"):
                    views = (batch[k].contiguous(memory_format=layout) for k in ("left", "right"))
                    coc = net(*views).defocus_map
                with torch.set_grad_enabled(phase == "kernel"):
                    kernels = kernel()
                loss, parts = defocus_map_loss(
                    batch["sharp"],
                    batch["blurred"],
                    coc,
                    kernels,
                    smoothness_weight=smooth,
                    reblur_weight=args.lambda_reblur,
                    search_weight=args.lambda_search,
                    search_window_sigma=args.search_window_sigma,
                    search_views=(batch["left"], batch["right"]) if args.search_dp_views else None,
                )
                accelerator.backward(loss)
                optimizer = optimizer_net if phase == "net" else optimizer_kernel
                if accelerator.sync_gradients and args.max_grad_norm > 0 and phase == "net":
                    accelerator.clip_grad_norm_(net.parameters(), args.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
        if ema is not None and phase == "net":
            ema.step(accelerator.unwrap_model(net).parameters())
        logs = {
            "loss/total": float(loss.detach()),
            **{f"loss/{k}": float(v) for k, v in parts.items()},
            "phase_kernel": float(phase == "kernel"),
        }
        train_seconds += time.time() - step_started  # after the float() calls above, which wait for the device
        step += 1
        progress.update(1)
        if budget.spent():  # this step becomes the last: logged, checkpointed, validated and exported below
            args.max_train_steps = step
        progress.set_postfix(loss=f"{logs['loss/total']:.4f}", phase=phase)
        if step % args.logging_steps == 0 or step == args.max_train_steps:
            logs["steps_per_second"] = (step - start_step) / max(time.time() - started, 1e-9)
            logs["images_per_second"] = (step - start_step) * images_per_step / max(train_seconds, 1e-9)
            log_jsonl(accelerator, args, logs, step)
            logger.info(f"step {step} ({phase}): " + ", ".join(f"{k}={v:.5g}" for k, v in logs.items()))
        if step % args.checkpointing_steps == 0 or step == args.max_train_steps:
            save_checkpoint(accelerator, args, step)
        if (
            accelerator.is_main_process
            and validation
            and (step % args.validation_steps == 0 or step == args.max_train_steps)
        ):
            with ema_weights(ema, accelerator.unwrap_model(net)):
                history = log_validation(net, kernel, args, accelerator, step, validation, search_cache)
            log_jsonl(accelerator, args, history, step)
    progress.close()
    if ema is not None:
        ema.copy_to(accelerator.unwrap_model(net).parameters())  # validated and exported from here on
    if accelerator.is_main_process and validation and not history:
        history = log_validation(net, kernel, args, accelerator, step, validation, search_cache)

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        out = Path(args.output_dir)
        for_export(accelerator.unwrap_model(net), args).save_pretrained(out / "defocus_net")
        accelerator.unwrap_model(kernel).save_pretrained(out / "blur_kernel")
        write_model_card(
            out / "defocus_net",
            title="Dual-pixel defocus-map net (defocusgan_hf, stage 1)",
            description=f"Trained without ground-truth maps by `train/train_defocus_map.py` for {step} steps on "
            f"{args.dataset} data with the {args.kernel} kernel ({args.resolution}² crops, "
            f"batch {args.train_batch_size}). "
            f"Metrics on the first {len(validation)} samples of {validation_source(args)}.",
            metrics=history,
            command="accelerate launch train/train_defocus_map.py " + " ".join(sys.argv[1:]),
            tags=["defocus-map", "depth-estimation"],
        )
        if args.push_to_hub:
            from huggingface_hub import upload_folder

            upload_folder(
                repo_id=args.hub_model_id, folder_path=str(out / "defocus_net"), commit_message=f"step {step}"
            )
    accelerator.end_training()
    return history


if __name__ == "__main__":
    main(parse_args())
