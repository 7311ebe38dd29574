"""An exponential moving average of the trained net (diffusers' ``EMAModel``), checkpointed as a Hub folder."""

from __future__ import annotations

import argparse
import json
from contextlib import contextmanager
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.logging import get_logger

logger = get_logger(__name__)

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
