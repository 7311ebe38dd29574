#!/usr/bin/env python
"""Stage 2: train the DefocusGAN generator (paper, "DefocusGAN", Eq. 6-8) with Accelerate.

    accelerate launch train/train_defocusgan.py --output_dir runs/defocusgan --resolution 512 --train_batch_size 4

Each step: sharp crops -> synthetic DP scene rendered on the accelerator (or a DPDD batch) -> CoC map (the true one on
synthetic data, or the stage-1 net's estimate with --defocus_model) -> generator with the mask guidance weight
w = exp(-(2 step / anneal)^2), which reaches ~0 after --guidance_anneal_steps, so inference needs the image alone.

How G and D interleave: from --critic_start_step, every generator step is preceded by --critic_steps critic updates
on the same batch (WGAN-GP, defocus-weighted responses, Eq. 7); from --adversarial_start_step the generator loss gets
the β-weighted adversarial term, computed through the unwrapped critic with its parameters frozen, so no critic
gradient is produced (and none goes stale) in the generator step. With --gradient_accumulation_steps k, both
optimisers step once every k micro-batches on gradients summed over them (accelerate's `accumulate`), so the critic's
--critic_steps updates per generator step each see k micro-batches.

Loss: L1 + α·perceptual (VGG19 conv3_3, weights from --vgg_weights) + β·adversarial (+ optional FFT-amplitude L1).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from accelerate.logging import get_logger
from tqdm.auto import tqdm

from defocusgan_hf.data import DualPixelRenderer
from defocusgan_hf.evaluation.metrics import psnr
from defocusgan_hf.evaluation.real_captures import load_scenes, training_validation
from defocusgan_hf.models import (
    DefocusDeblurNet,
    DualPixelDefocusNet,
    PatchDiscriminator,
    guidance_weight_at,
)
from defocusgan_hf.models.deblur_net import GENERATOR_PRESETS, grow_refinement, to_luma_residual
from defocusgan_hf.perceptual.vgg import VGG19Features
from defocusgan_hf.pipelines import DefocusDeblurPipeline
from defocusgan_hf.pipelines.loading import load_blur_kernel, load_defocus_net
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
from defocusgan_hf.training.losses import GeneratorLoss, PerceptualLoss, critic_loss, defocus_weights
from defocusgan_hf.training.model_card import write_model_card
from defocusgan_hf.training.sampling import step_generator, step_loader, training_dataset
from defocusgan_hf.training.schedule import lr_lambda, set_learning_rate
from defocusgan_hf.training.validation import validation_samples, validation_source

logger = get_logger(__name__)
CONFIGS = Path(__file__).resolve().parent / "configs"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, default_output_dir="runs/defocusgan", default_lr=2e-4)
    add = parser.add_argument
    add(
        "--model_config",
        default=None,
        help="JSON file or string of DefocusDeblurNet config overrides (e.g. a tiny net).",
    )
    add(
        "--generator_preset",
        default="lean",
        choices=sorted(GENERATOR_PRESETS),
        help="Layout of a new generator (models/deblur_net.py GENERATOR_PRESETS; 'paper' is the released code's "
        "64-channel, full-resolution one, 'lean' ours); --model_config overrides apply on top.",
    )
    add(
        "--lr_halving_steps",
        type=int,
        default=0,
        help="Halve the learning rate every N steps (ours: 0, constant; paper: every 30 epochs, --recipe paper).",
    )
    add("--lambda_content", type=float, default=1.0, help="Weight of the L1 content loss (paper: 1).")
    add("--lambda_perceptual", type=float, default=0.012, help="α, weight of the VGG19 conv3_3 loss (paper: 0.012).")
    add("--lambda_adv", type=float, default=0.002, help="β, weight of the defocus adversarial loss (paper: 0.002).")
    add("--lambda_fft", type=float, default=0.0, help="Weight of an L1 loss on FFT amplitudes (not in the paper).")
    add(
        "--vgg_weights",
        default=None,
        help="VGG19 weights: .safetensors file, folder, or Hub id (timm/vgg19.tv_in1k layout).",
    )
    add(
        "--adversarial_loss",
        default="defocus",
        choices=["defocus", "uniform"],
        help="Table 6: defocus-weighted or plain.",
    )
    add("--critic_steps", type=int, default=2, help="Critic updates per generator step (released code: 2).")
    add(
        "--critic_start_step",
        type=int,
        default=0,
        help="First step with critic updates (ours: 0; released code: epoch 5, --recipe paper).",
    )
    add(
        "--adversarial_start_step",
        type=int,
        default=0,
        help="First step with the adversarial term in the generator loss (ours: 0; released code: epoch 10, "
        "--recipe paper).",
    )
    add("--critic_learning_rate", type=float, default=None, help="Critic lr (default: --learning_rate).")
    add("--gp_weight", type=float, default=10.0, help="WGAN-GP gradient-penalty weight.")
    add(
        "--guidance_anneal_steps",
        type=float,
        default=2e4,
        help="Mask weight reaches ~0 after this many steps (paper: 2e4).",
    )
    add("--no_guidance", action="store_true", help="Table 4 ablation: no defocus-map guidance at all.")
    add("--no_rcab", action="store_true", help="Table 4 ablation: plain convs instead of RCABs.")
    add(
        "--single_scale",
        action="store_true",
        help="Table 4 ablation: full scale only (no 1/4, 1/8 DGBs), its DGB as deep as the multi-scale net's deepest "
        "level so that the parameter count stays within 0.5%% of it.",
    )
    add(
        "--defocus_model",
        default=None,
        help="Stage-1 pipeline/model folder: guide with its estimated maps instead of true ones.",
    )
    add(
        "--max_aperture",
        type=float,
        default=None,
        help="Cap the synthetic scenes' CoC scale (px); default: the engine's.",
    )
    add_synthetic_data_args(parser, default_config="varied")
    add(
        "--luma_residual",
        action="store_true",
        help="Convert an --init_from generator with an RGB residual to a luma residual (grey stays grey; ours).",
    )
    add(
        "--residual_lowpass_sigma",
        type=float,
        default=None,
        help="Brightness-preserving output (px): the generator's residual loses its Gaussian low-pass of this standard "
        "deviation, so the output keeps the input's local mean (DefocusDeblurNet's residual_lowpass_sigma; also set "
        "on an --init_from net). Default: the net's own setting.",
    )
    add(
        "--grow_refinement",
        type=int,
        default=0,
        help="Capacity by growth: add a zero-initialised full-resolution refinement level of this many channels to "
        "the --init_from generator (grow_refinement; it starts as exactly that generator). 0: none.",
    )
    add(
        "--real_val_root",
        default=None,
        help="Folder of real scenes (blurred.png + sharp.png per scene, e.g. ../shared/real/dpdd_gif) validated beside "
        "the synthetic set: PSNR gain and sharp-in fidelity in train_log.jsonl and TensorBoard (real/...).",
    )
    add(
        "--real_val_scenes",
        default="00,01,02,03,04,05,06",
        help="Comma-separated scene folders of --real_val_root used for validation (checkpoints are chosen on these; "
        "report the others separately).",
    )
    add(
        "--bundle_defocus_model",
        default=None,
        help="Stage-1 folder to include in the final pipeline (not used for guidance).",
    )
    recipes.add_recipe_args(parser, CONFIGS, "defocusgan")
    args = recipes.parse_args(parser, argv, CONFIGS, "defocusgan")
    if args.lambda_perceptual > 0 and args.vgg_weights is None:
        parser.error(
            "--lambda_perceptual > 0 needs VGG19 ImageNet weights: download timm/vgg19.tv_in1k's model.safetensors on "
            "a machine with Hub access and pass --vgg_weights PATH, or set --lambda_perceptual 0."
        )
    return args


def build_generator(args) -> DefocusDeblurNet:
    if args.init_from:
        net = DefocusDeblurNet.from_pretrained(args.init_from, subfolder="deblur_net")
        net = to_luma_residual(net) if args.luma_residual else net
        if args.residual_lowpass_sigma is not None:
            config = {k: v for k, v in net.config.items() if not k.startswith("_")}
            preserving = DefocusDeblurNet(**{**config, "residual_lowpass_sigma": args.residual_lowpass_sigma})
            preserving.load_state_dict(net.state_dict())
            net = preserving
        return grow_refinement(net, args.grow_refinement) if args.grow_refinement else net
    config = load_model_config(args.model_config)
    if args.residual_lowpass_sigma is not None:
        config["residual_lowpass_sigma"] = args.residual_lowpass_sigma
    if args.no_rcab:
        config["block_type"] = "conv"
    if args.single_scale:
        # As deep at full scale as the multi-scale net goes at its coarsest, so every level (and its channels)
        # stays: the parameter budget is that of the multi-scale net less the small scale links (lean: 4.69M ->
        # 4.69M; the full-scale DGB alone, as before, kept 0.75M and confounded Table 4's multi-scale row).
        multi = DefocusDeblurNet.from_preset(args.generator_preset, **config)
        deepest = max(f + n for f, n in zip(multi.first_levels, multi.config.levels_per_scale))
        config.update(scales=(1,), levels_per_scale=(deepest,))
    return DefocusDeblurNet.from_preset(args.generator_preset, **config)


def fft_amplitude_loss(restored: torch.Tensor, sharp: torch.Tensor) -> torch.Tensor:
    return (torch.fft.rfft2(restored.float()).abs() - torch.fft.rfft2(sharp.float()).abs()).abs().mean() / math.sqrt(
        restored.shape[-1] * restored.shape[-2]
    )


class Batches:
    """Training batches on the accelerator: {blurred, sharp, coc}, step-indexed for exact resume."""

    def __init__(self, args, accelerator, start_step: int, defocus_net: DualPixelDefocusNet | None):
        self.args, self.accelerator, self.defocus_net = args, accelerator, defocus_net
        if args.dataset == "dpdd" and defocus_net is None:
            raise SystemExit("--dataset dpdd has no true CoC maps: pass --defocus_model (a stage-1 checkpoint).")
        with accelerator.main_process_first():  # one process builds the --source_cache_dir banks, the rest read them
            dataset = training_dataset(args)
        self.renderer = None
        if args.dataset == "synthetic":
            config = synthetic_config(args)
            if args.max_aperture is not None:
                config = config.replace(aperture_range=(config.aperture_range[0], args.max_aperture))
            self.renderer = DualPixelRenderer(config)
        self.iterator = iter(step_loader(dataset, args, accelerator, start_step))

    @torch.no_grad()
    def next(self, step: int) -> dict[str, torch.Tensor]:
        device = self.accelerator.device
        batch = {k: v.to(device) for k, v in next(self.iterator).items() if isinstance(v, torch.Tensor)}
        if self.renderer is not None:
            generator = step_generator(self.args.seed, step, self.accelerator.process_index, device)
            batch = self.renderer(batch["sharp"], generator)
        if self.defocus_net is not None:
            batch["coc"] = self.defocus_net(batch["left"], batch["right"]).defocus_map
        layout = memory_format(self.args)  # the nets' inputs; the losses take any layout
        return {k: batch[k].contiguous(memory_format=layout) for k in ("blurred", "sharp", "coc")}


@torch.no_grad()
def log_validation(
    generator, args, accelerator, step: int, validation: list[dict], real_scenes: list | None = None
) -> dict[str, float]:
    """PSNR of the input and of the restored image on the fixed synthetic validation samples, with a picture of
    the first three, and with ``real_scenes`` the real-capture figures of :func:`training_validation`."""
    model = accelerator.unwrap_model(generator)
    was_training = model.training
    model.eval()
    try:
        metrics = synthetic_validation(model, args, accelerator, step, validation) if validation else {}
        if real_scenes:
            metrics.update(real_validation(model, accelerator, step, real_scenes, memory_format(args)))
    finally:
        model.train(was_training)
    return metrics


def synthetic_validation(model, args, accelerator, step: int, validation: list[dict]) -> dict[str, float]:
    restored_psnr, input_psnr, rows = [], [], []
    for sample in validation:
        blurred = sample["blurred"][None].to(accelerator.device).contiguous(memory_format=memory_format(args))
        sharp = sample["sharp"][None].to(accelerator.device)
        restored = model(blurred).sample
        sharp_array = sharp[0].float().permute(1, 2, 0).cpu().numpy()
        restored_psnr.append(psnr(restored[0].float().permute(1, 2, 0).cpu().numpy(), sharp_array))
        input_psnr.append(psnr(blurred[0].float().permute(1, 2, 0).cpu().numpy(), sharp_array))
        if len(rows) < 3:
            rows.append(torch.cat([blurred, restored, sharp], dim=-1)[0])
    metrics = {"val/psnr": float(np.mean(restored_psnr)), "val/input_psnr": float(np.mean(input_psnr))}
    metrics["val/psnr_gain"] = metrics["val/psnr"] - metrics["val/input_psnr"]
    grid = (torch.cat(rows, dim=-2).permute(1, 2, 0).clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)
    folder = Path(args.output_dir) / "validation"
    folder.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    Image.fromarray(grid).save(folder / f"step-{step:07d}.png")
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            tracker.writer.add_image("validation/blurred_restored_sharp", grid, step, dataformats="HWC")
    logger.info(f"step {step}: validation PSNR {metrics['val/psnr']:.3f} dB (input {metrics['val/input_psnr']:.3f} dB)")
    return metrics


def real_validation(
    model, accelerator, step: int, real_scenes: list, layout: torch.memory_format = torch.contiguous_format
) -> dict[str, float]:
    device = accelerator.device

    @torch.inference_mode()
    def restore(image: np.ndarray) -> np.ndarray:
        tensor = torch.from_numpy(image).permute(2, 0, 1)[None].to(device).contiguous(memory_format=layout)
        return model(tensor).sample[0].permute(1, 2, 0).float().cpu().numpy()

    metrics = training_validation(restore, real_scenes)
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            for key in ("real/psnr_gain", "real/sharp_in", "real/sharp_in_min", "real/worst_gain"):
                tracker.writer.add_scalar(key, metrics[key], step)
    logger.info(
        f"step {step}: real scenes {metrics['real/psnr_gain']:+.3f} dB over the input (worst "
        f"{metrics['real/worst_gain']:+.3f}), sharp-in {metrics['real/sharp_in']:.2f} dB "
        f"(min {metrics['real/sharp_in_min']:.2f})"
    )
    return metrics


def main(args: argparse.Namespace) -> dict[str, float]:
    check_output_dir(args)
    accelerator = make_accelerator(args)
    if args.recipe_steps:
        logger.info(f"--recipe {args.recipe}, in steps: {args.recipe_steps}")
    resume = resolve_resume(args)

    generator_net = build_generator(args)
    generator_net.train()
    critic = PatchDiscriminator()
    if args.channels_last:
        generator_net.to(memory_format=torch.channels_last)
        critic.to(memory_format=torch.channels_last)
    use_critic = args.lambda_adv > 0
    perceptual = None
    if args.lambda_perceptual > 0:
        perceptual = PerceptualLoss(VGG19Features.from_pretrained(args.vgg_weights)).to(accelerator.device)
    loss_fn = GeneratorLoss(args.lambda_content, args.lambda_perceptual, args.lambda_adv, perceptual)
    defocus_net = None
    if args.defocus_model:
        defocus_net = load_defocus_net(args.defocus_model).to(accelerator.device).eval().requires_grad_(False)

    optimizer_g = torch.optim.Adam(
        generator_net.parameters(),
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        weight_decay=args.adam_weight_decay,
    )
    optimizer_d = torch.optim.Adam(
        critic.parameters(),
        lr=args.critic_learning_rate or args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
    )
    # The learning rate is a pure function of the step (set before each step), so resuming needs no scheduler state
    # and DDP does not multiply scheduler steps.
    schedule = lr_lambda(args.lr_warmup_steps, args.lr_halving_steps)
    generator_net, critic, optimizer_g, optimizer_d = accelerator.prepare(
        generator_net, critic, optimizer_g, optimizer_d
    )
    register_hub_folder_hooks(accelerator, ["deblur_net", "critic"])
    ema = make_ema(args, accelerator, generator_net)

    start_step = 0
    if resume is not None:
        accelerator.load_state(str(resume))
        start_step = checkpoint_step(resume)
        logger.info(f"Resumed from {resume} at step {start_step}")
    if accelerator.is_main_process:
        accelerator.init_trackers(
            "defocusgan", config={k: v for k, v in vars(args).items() if isinstance(v, int | float | str | bool)}
        )

    batches = Batches(args, accelerator, start_step, defocus_net)
    validation = validation_samples(args, dp_views=False)
    real_scenes = load_scenes(args.real_val_root, args.real_val_scenes.split(",")) if args.real_val_root else None
    critic_generator = torch.Generator(device=accelerator.device)
    progress = tqdm(
        range(start_step, args.max_train_steps),
        initial=start_step,
        total=args.max_train_steps,
        disable=not accelerator.is_local_main_process,
        desc="steps",
    )
    history: dict[str, float] = {}
    step = start_step
    started, train_seconds = time.time(), 0.0  # wall clock, and the part of it spent in training steps
    images_per_step = args.train_batch_size * args.gradient_accumulation_steps * accelerator.num_processes
    budget = TimeBudget(args.max_train_minutes, accelerator)
    while step < args.max_train_steps:
        step_started = time.time()
        weight = 0.0 if args.no_guidance else guidance_weight_at(step, args.guidance_anneal_steps)
        set_learning_rate(optimizer_g, args.learning_rate * schedule(step))
        set_learning_rate(optimizer_d, (args.critic_learning_rate or args.learning_rate) * schedule(step))
        for _ in range(args.gradient_accumulation_steps):
            batch = batches.next(step)
            blurred, sharp, coc = batch["blurred"], batch["sharp"], batch["coc"]
            with accelerator.accumulate(generator_net, critic):
                restored = generator_net(blurred, coc, guidance_weight=weight).sample
                logs = {"guidance_weight": weight}
                if use_critic:
                    phi = defocus_weights(
                        coc, accelerator.unwrap_model(critic).output_size(*sharp.shape[-2:]), mode=args.adversarial_loss
                    )
                if use_critic and step >= args.critic_start_step:
                    critic_generator.manual_seed(args.seed * 7 + step)
                    for _ in range(args.critic_steps):
                        d_loss, d_logs = critic_loss(
                            critic, sharp, restored.detach(), phi, args.gp_weight, critic_generator
                        )
                        accelerator.backward(d_loss)
                        optimizer_d.step()
                        optimizer_d.zero_grad(set_to_none=True)
                    logs.update({f"critic/{k}": float(v) for k, v in d_logs.items()})
                adversarial = use_critic and step >= args.adversarial_start_step
                g_loss, g_logs = loss_fn(
                    restored,
                    sharp,
                    critic=accelerator.unwrap_model(critic) if adversarial else None,
                    weights=phi if adversarial else None,
                )
                if args.lambda_fft > 0:
                    fft = fft_amplitude_loss(restored, sharp)
                    g_loss = g_loss + args.lambda_fft * fft
                    g_logs["fft"] = fft.detach()
                accelerator.backward(g_loss)
                if accelerator.sync_gradients and args.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(generator_net.parameters(), args.max_grad_norm)
                optimizer_g.step()
                optimizer_g.zero_grad(set_to_none=True)
        logs.update({f"loss/{k}": float(v) for k, v in g_logs.items()})
        logs["loss/total"] = g_loss.item()
        logs["lr"] = optimizer_g.param_groups[0]["lr"]
        if ema is not None:
            ema.step(accelerator.unwrap_model(generator_net).parameters())
        train_seconds += time.time() - step_started  # after the .item() calls above, which wait for the device
        step += 1
        progress.update(1)
        if budget.spent():  # this step becomes the last: logged, checkpointed, validated and exported below
            args.max_train_steps = step
        progress.set_postfix(loss=f"{logs['loss/total']:.4f}", w=f"{weight:.2f}")
        if step % args.logging_steps == 0 or step == args.max_train_steps:
            logs["steps_per_second"] = (step - start_step) / max(time.time() - started, 1e-9)
            logs["images_per_second"] = (step - start_step) * images_per_step / max(train_seconds, 1e-9)
            log_jsonl(accelerator, args, logs, step)
            logger.info(f"step {step}: " + ", ".join(f"{k}={v:.5g}" for k, v in logs.items()))
        if step % args.checkpointing_steps == 0 or step == args.max_train_steps:
            save_checkpoint(accelerator, args, step)
        validate = (validation or real_scenes) and (step % args.validation_steps == 0 or step == args.max_train_steps)
        if accelerator.is_main_process and validate:
            with ema_weights(ema, accelerator.unwrap_model(generator_net)):
                history = log_validation(generator_net, args, accelerator, step, validation, real_scenes)
            log_jsonl(accelerator, args, history, step)
        history["last_loss"] = logs["loss/total"]
    progress.close()
    if (
        accelerator.is_main_process
        and (validation or real_scenes)
        and not history.get("val/psnr", history.get("real/psnr"))
    ):
        if ema is not None:
            ema.copy_to(accelerator.unwrap_model(generator_net).parameters())
        history.update(log_validation(generator_net, args, accelerator, step, validation, real_scenes))

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        final = accelerator.unwrap_model(generator_net)
        if ema is not None:
            ema.copy_to(final.parameters())
        stage1 = args.defocus_model or args.bundle_defocus_model
        if defocus_net is None and stage1:
            defocus_net = load_defocus_net(stage1)
        pipe = DefocusDeblurPipeline(
            deblur_net=for_export(final.eval(), args),
            defocus_net=None if defocus_net is None else for_export(defocus_net, args),
            blur_kernel=load_blur_kernel(stage1),
        )
        pipeline_dir = Path(args.output_dir) / "pipeline"
        pipe.save_pretrained(pipeline_dir)
        write_model_card(
            pipeline_dir,
            title="DefocusGAN generator (defocusgan_hf)",
            description=f"Trained with `train/train_defocusgan.py` for {step} steps on {args.dataset} data "
            f"({args.resolution}² crops, batch {args.train_batch_size}). Metrics on the first "
            f"{len(validation)} samples of {validation_source(args)}.",
            metrics=history,
            command="accelerate launch train/train_defocusgan.py " + " ".join(sys.argv[1:]),
            tags=["defocusgan"],
        )
        if args.push_to_hub:
            from huggingface_hub import upload_folder

            upload_folder(repo_id=args.hub_model_id, folder_path=str(pipeline_dir), commit_message=f"step {step}")
    accelerator.end_training()
    return history


if __name__ == "__main__":
    main(parse_args())
