#!/usr/bin/env python
"""Training throughput in images per second: sharp-crop sources, the DP renderer, the generator step, all together.

    bash benchmarks/quiet.sh python benchmarks/bench_train_throughput.py [--threads 2] [--output train.json]
    python benchmarks/bench_train_throughput.py --quick          # tiny sizes and repetitions (a smoke run)

Figures, each in images/s (median of the timed repetitions, after warm-up calls):

- ``sources``: sharp crops made by :class:`~defocusgan_hf.data.SharpImageDataset` with the training sources
  (skimage, dead leaves, text), one crop per image, in this process (what DataLoader workers pay), per data preset,
  drawn anew (``images_per_s``) and with the procedural ones read from a crop cache (``cached_images_per_s``,
  ``--source_cache_dir``; the cache is built before timing), in alternating pairs;
- ``render``: :class:`~defocusgan_hf.data.DualPixelRenderer` on a sharp batch already on the device, per device and
  data preset, with today's renderer (``new``: :func:`~defocusgan_hf.data.render.render_layers`) and the former one
  (``old``: ``_render_layers_per_sublayer``), timed in pairs of alternating order, with the ratio new / old;
- ``step``: one generator training step as train/train_defocusgan.py builds it (forward, ``--critic_steps 2``
  WGAN-GP critic updates, generator loss with the defocus-weighted adversarial term, backward, clipping, Adam), with
  and without the critic (``--lambda_adv 0``), per device and precision (``fp32``; ``bf16``: bf16 autocast and
  channels-last nets and inputs, the GPU recipes' settings). No perceptual term (``--lambda_perceptual 0``: the VGG
  weights are not downloaded here);
- ``together``: sources, copy to the device, rendering and the step with the critic, one batch after another, per
  device, data preset and precision, old against new renderer in alternating pairs, with the ratio new / old.

Absolute numbers on a shared machine are noisy (pause other jobs: ``benchmarks/quiet.sh``); the ratios are measured
side by side in the same run. JSON (``--output``) holds every figure and the settings; stdout a table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_generator import load_average, machine_line, markdown_table, paired_times, save_json  # noqa: E402

from defocusgan_hf.data import (  # noqa: E402
    DualPixelConfig,
    DualPixelRenderer,
    SharpImageDataset,
    synthetic,
)
from defocusgan_hf.data import render as render_module  # noqa: E402
from defocusgan_hf.data.crop_cache import CropCache  # noqa: E402
from defocusgan_hf.models import DefocusDeblurNet, PatchDiscriminator  # noqa: E402
from defocusgan_hf.training.losses import GeneratorLoss, critic_loss, defocus_weights  # noqa: E402

PRESETS = {"default": "eq3", "varied": "varied"}  # label -> DualPixelConfig.named
PRECISIONS = ("fp32", "bf16")


def bank_by_bank(render_one):
    """A ``render_layers_with_banks`` that renders each bank on its own with ``render_one`` (no FFTs shared)."""

    def render(layers, alpha, coc, banks):
        return [render_one(layers, alpha, coc, bank) for bank in banks]

    return render


# name -> (render_layers, render_layers_with_banks) that DualPixelRenderer uses
RENDERERS = {
    "old": (render_module._render_layers_per_sublayer, bank_by_bank(render_module._render_layers_per_sublayer)),
    "new": (render_module.render_layers, render_module.render_layers_with_banks),
}
SOURCES = ("skimage", "dead_leaves", "text")  # training_dataset's synthetic sources
TINY_GENERATOR = {"level_channels": [4, 4, 8, 8, 8], "branch_depths": [0, 1, 1, 1]}


@contextlib.contextmanager
def patched_renderers(renderers: tuple):
    """Make :class:`DualPixelRenderer` use ``(render_layers, render_layers_with_banks)`` inside the block."""
    saved = synthetic.render_layers, synthetic.render_layers_with_banks
    synthetic.render_layers, synthetic.render_layers_with_banks = renderers
    try:
        yield
    finally:
        synthetic.render_layers, synthetic.render_layers_with_banks = saved


def renderer_path(name: str):
    """Make :class:`DualPixelRenderer` use the ``old`` or ``new`` layered renderer inside the block."""
    return patched_renderers(RENDERERS[name])


def synchronizer(device: torch.device):
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def per_second(images: int, times: list[float]) -> float:
    return images / statistics.median(times)


class Sources:
    """Sharp training crops, one batch per call (a fresh index range each time, as a DataLoader would)."""

    def __init__(self, config: DualPixelConfig, resolution: int, batch: int, crop_cache: CropCache | None = None):
        self.dataset = SharpImageDataset(
            SOURCES, resolution=resolution, length=2**40, seed=0, config=config, crop_cache=crop_cache
        )
        self.batch, self.next = batch, 0

    def __call__(self) -> torch.Tensor:
        items = [self.dataset[self.next + i]["sharp"] for i in range(self.batch)]
        self.next += self.batch
        return torch.stack(items)


class TrainStep:
    """One generator step of train/train_defocusgan.py (with ``use_critic``: the critic's updates first)."""

    def __init__(self, model_config: dict, device: torch.device, precision: str, use_critic: bool, critic_steps=2):
        self.device, self.use_critic, self.critic_steps = device, use_critic, critic_steps
        self.bf16 = precision == "bf16"
        self.layout = torch.channels_last if self.bf16 else torch.contiguous_format
        self.net = DefocusDeblurNet.from_preset("lean", **model_config).to(device).train()
        self.critic = PatchDiscriminator().to(device)
        if self.bf16:
            self.net.to(memory_format=torch.channels_last)
            self.critic.to(memory_format=torch.channels_last)
        self.loss_fn = GeneratorLoss(1.0, 0.0, 0.002 if use_critic else 0.0, None)
        self.optimizer_g = torch.optim.Adam(self.net.parameters(), lr=1e-4, betas=(0.9, 0.999))
        self.optimizer_d = torch.optim.Adam(self.critic.parameters(), lr=1e-4, betas=(0.9, 0.999))
        self.critic_generator = torch.Generator(device=device).manual_seed(0)

    def autocast(self):
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def __call__(self, batch: dict[str, torch.Tensor]) -> float:
        blurred, sharp, coc = (batch[k].contiguous(memory_format=self.layout) for k in ("blurred", "sharp", "coc"))
        with self.autocast():
            restored = self.net(blurred, coc, guidance_weight=0.5).sample
        phi = None
        if self.use_critic:
            phi = defocus_weights(coc, self.critic.output_size(*sharp.shape[-2:]), mode="defocus")
            for _ in range(self.critic_steps):
                with self.autocast():
                    d_loss, _ = critic_loss(self.critic, sharp, restored.detach(), phi, 10.0, self.critic_generator)
                d_loss.backward()
                self.optimizer_d.step()
                self.optimizer_d.zero_grad(set_to_none=True)
        with self.autocast():
            g_loss, _ = self.loss_fn(
                restored,
                sharp,
                critic=self.critic if self.use_critic else None,
                weights=phi if self.use_critic else None,
            )
        g_loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
        self.optimizer_g.step()
        self.optimizer_g.zero_grad(set_to_none=True)
        return g_loss.item()


def run(args: argparse.Namespace) -> dict:
    devices = [torch.device(d) for d in args.devices.split(",")]
    presets, precisions = args.presets.split(","), args.precisions.split(",")
    model_config = json.loads(args.model_config) if args.model_config else {}
    B, R, warmup, reps = args.batch, args.resolution, args.warmup, args.repeats
    configs = {label: DualPixelConfig.named(PRESETS[label]) for label in presets}
    sharp_batches = {label: Sources(configs[label], R, B)() for label in presets}
    steps_total = reps * (
        len(presets) + len(devices) * (len(presets) + 2 * len(precisions) + len(presets) * len(precisions))
    )
    results: dict = {"sources": {}, "render": {}, "step": {}, "together": {}}
    progress = tqdm(total=steps_total, desc="repetitions", disable=args.no_progress)
    no_sync = synchronizer(torch.device("cpu"))
    with tempfile.TemporaryDirectory() as cache_dir:
        cache = CropCache(cache_dir, args.cache_tiles, progress=not args.no_progress)
        for label in presets:
            fns = {"drawn": Sources(configs[label], R, B), "cached": Sources(configs[label], R, B, cache)}
            times = paired_times(fns, warmup, reps, no_sync, progress)
            entry = {
                "images_per_s": per_second(B, times["drawn"]),
                "cached_images_per_s": per_second(B, times["cached"]),
            }
            entry["ratio_cached_over_drawn"] = entry["cached_images_per_s"] / entry["images_per_s"]
            results["sources"][label] = entry
    for device in devices:
        sync, key = synchronizer(device), device.type
        results["render"][key], results["step"][key], results["together"][key] = {}, {}, {}
        for label in presets:
            renderer = DualPixelRenderer(configs[label])
            sharp = sharp_batches[label].to(device)
            generator = torch.Generator(device).manual_seed(0)

            def render(name, renderer=renderer, sharp=sharp, generator=generator):
                with renderer_path(name):
                    renderer(sharp, generator)

            fns = {name: (lambda name=name: render(name)) for name in RENDERERS}
            times = paired_times(fns, warmup, reps, sync, progress)
            entry = {f"{name}_images_per_s": per_second(B, times[name]) for name in RENDERERS}
            entry["ratio_new_over_old"] = entry["new_images_per_s"] / entry["old_images_per_s"]
            results["render"][key][label] = entry
        batch = DualPixelRenderer(configs[presets[0]])(sharp_batches[presets[0]].to(device), torch.Generator(device))
        for precision in precisions:
            entry = {}
            for use_critic in (True, False):
                step = TrainStep(model_config, device, precision, use_critic)
                times = paired_times(
                    {"step": lambda step=step, batch=batch: step(batch)}, warmup, reps, sync, progress
                )["step"]
                entry["with_critic_images_per_s" if use_critic else "without_critic_images_per_s"] = per_second(
                    B, times
                )
            results["step"][key][precision] = entry
        for label in presets:
            results["together"][key][label] = {}
            for precision in precisions:
                sources = Sources(configs[label], R, B)
                renderer = DualPixelRenderer(configs[label])
                step = TrainStep(model_config, device, precision, use_critic=True)
                generator = torch.Generator(device).manual_seed(0)

                def together(name, sources=sources, renderer=renderer, step=step, generator=generator, device=device):
                    with renderer_path(name):
                        step(renderer(sources().to(device), generator))

                fns = {name: (lambda name=name: together(name)) for name in RENDERERS}
                times = paired_times(fns, warmup, reps, sync, progress)
                entry = {f"{name}_images_per_s": per_second(B, times[name]) for name in RENDERERS}
                entry["ratio_new_over_old"] = entry["new_images_per_s"] / entry["old_images_per_s"]
                results["together"][key][label][precision] = entry
    progress.close()
    return results


def tables(results: dict) -> str:
    rows = [
        ["sources (drawn / crop cache)", "cpu", label, "-", f"{r['images_per_s']:.1f}",
         f"{r['cached_images_per_s']:.1f}", f"{r['ratio_cached_over_drawn']:.2f}"]
        for label, r in results["sources"].items()
    ]  # fmt: skip
    for device, per_preset in results["render"].items():
        for label, r in per_preset.items():
            rows.append(
                ["render", device, label, "fp32", f"{r['old_images_per_s']:.1f}", f"{r['new_images_per_s']:.1f}",
                 f"{r['ratio_new_over_old']:.2f}"]
            )  # fmt: skip
    for device, per_precision in results["step"].items():
        for precision, r in per_precision.items():
            for critic in ("with", "without"):
                rows.append(
                    [f"step ({critic} critic)", device, "-", precision, "-",
                     f"{r[f'{critic}_critic_images_per_s']:.1f}", "-"]
                )  # fmt: skip
    for device, per_preset in results["together"].items():
        for label, per_precision in per_preset.items():
            for precision, r in per_precision.items():
                rows.append(
                    ["all together", device, label, precision, f"{r['old_images_per_s']:.1f}",
                     f"{r['new_images_per_s']:.1f}", f"{r['ratio_new_over_old']:.2f}"]
                )  # fmt: skip
    headers = ["stage", "device", "data", "precision", "before (img/s)", "after (img/s)", "after / before"]
    note = "\nbefore / after: the old / new renderer; for sources, crops drawn anew / read from the crop cache.\n"
    return markdown_table(headers, rows) + note


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default_devices = "cpu,cuda" if torch.cuda.is_available() else "cpu"
    add = parser.add_argument
    add("--threads", type=int, default=min(2, os.cpu_count() or 1), help="torch CPU threads (default 2).")
    add("--output", default=None, help="Also write the measurements to this JSON file.")
    add("--quick", action="store_true", help="Tiny sizes, a tiny generator and few repetitions (a smoke run).")
    add("--devices", default=default_devices, help=f"Comma-separated devices (default: {default_devices}).")
    add("--presets", default=",".join(PRESETS), help="Comma-separated data presets: default (eq3), varied.")
    add("--precisions", default=",".join(PRECISIONS), help="Comma-separated precisions: fp32, bf16.")
    add("--batch", type=int, default=None, help="Images per batch (default 2; --quick: 2).")
    add("--resolution", type=int, default=None, help="Crop size in pixels (default 256; --quick: 32).")
    add("--repeats", type=int, default=None, help="Timed repetitions per figure (default 6; --quick: 2).")
    add("--warmup", type=int, default=None, help="Untimed calls before timing (default 1; --quick: 1).")
    add("--model_config", default=None, help="JSON DefocusDeblurNet overrides on the 'lean' preset "
        "(default: none; --quick: a tiny net).")  # fmt: skip
    add("--cache_tiles", type=int, default=None, help="Tiles per procedural source in the crop cache that the "
        "sources figure reads (built in a temporary folder before timing; default 256; --quick: 4).")  # fmt: skip
    add("--no_progress", action="store_true", help="No tqdm progress bar.")
    args = parser.parse_args(argv)
    quick = {"batch": 2, "resolution": 32, "repeats": 2, "warmup": 1, "model_config": json.dumps(TINY_GENERATOR),
             "cache_tiles": 4}  # fmt: skip
    full = {"batch": 2, "resolution": 256, "repeats": 6, "warmup": 1, "model_config": None, "cache_tiles": 256}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    for name in ("presets", "precisions"):
        unknown = set(getattr(args, name).split(",")) - set(PRESETS if name == "presets" else PRECISIONS)
        if unknown:
            parser.error(f"unknown --{name}: {sorted(unknown)}")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    print(machine_line(torch.get_num_threads()))
    if torch.cuda.is_available():
        print(f"CUDA device: {torch.cuda.get_device_name()}")
    print(f"batch {args.batch} × {args.resolution}², {args.repeats} repetitions after {args.warmup} warm-up")
    results = run(args)
    print(tables(results))
    payload = {
        "machine": machine_line(torch.get_num_threads()),
        "load_average_end": load_average(),
        "settings": {
            k: getattr(args, k)
            for k in ("batch", "resolution", "repeats", "warmup", "devices", "presets", "precisions", "model_config")
        },
        "results": results,
    }
    payload["settings"]["threads"] = torch.get_num_threads()
    payload["settings"]["quick"] = args.quick
    save_json(args.output, payload)
    bad = [path for path, value in leaves(results) if not (math.isfinite(value) and value > 0)]
    if bad:
        raise SystemExit(f"non-positive or non-finite figures: {bad}")
    return payload


def leaves(tree: dict, prefix: str = ""):
    """``(path, value)`` of every number in a nested dict of results."""
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


if __name__ == "__main__":
    main()
