"""Child process of tests/train/test_checkpointing.py: a tiny run that saves checkpoints (and can be killed in the
middle of one), or resumes from ``latest``. Not a test module (no ``test_`` prefix).

    python checkpoint_child.py save OUTPUT_DIR LIMIT     # checkpoint-1, then hangs inside the save of checkpoint-2
    python checkpoint_child.py resume OUTPUT_DIR         # prints {"resumed": ..., "step": ..., "ema_step": ...}

"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch
from accelerate import Accelerator

from defocusgan_hf.models import DefocusDeblurNet
from defocusgan_hf.training.accelerator import register_hub_folder_hooks
from defocusgan_hf.training.checkpoints import checkpoint_step, resolve_resume, save_checkpoint
from defocusgan_hf.training.ema import make_ema


def main(mode: str, output_dir: str, limit: int = 1) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    args = argparse.Namespace(
        output_dir=output_dir,
        checkpoints_total_limit=limit,
        resume_from_checkpoint="latest",
        use_ema=True,
        ema_decay=0.9,
    )
    accelerator = Accelerator(cpu=True)
    net = DefocusDeblurNet(level_channels=(4, 4, 8, 8, 8), branch_depths=(0, 1, 1, 1))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    net, optimizer = accelerator.prepare(net, optimizer)
    register_hub_folder_hooks(accelerator, ["deblur_net"])
    ema = make_ema(args, accelerator, net)
    if mode == "resume":
        resume = resolve_resume(args)
        if resume is not None:
            accelerator.load_state(str(resume))
        first = next(accelerator.unwrap_model(net).parameters())
        weight = float(first.detach().double().sum())
        step = resume and checkpoint_step(resume)
        print(
            json.dumps(
                {"resumed": resume and resume.name, "step": step, "ema_step": ema.optimization_step, "weight": weight}
            )
        )
        return
    for step in (1, 2):
        loss = net(torch.rand(1, 3, 32, 32)).sample.square().mean()
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
        ema.step(accelerator.unwrap_model(net).parameters())
        if step == 2:  # registered last: runs after the weights' hook has written deblur_net/, before the rest

            def hang(models, weights, output_dir):
                print("SAVING", output_dir, flush=True)
                time.sleep(600)

            accelerator.register_save_state_pre_hook(hang)
        weight = float(next(accelerator.unwrap_model(net).parameters()).detach().double().sum())
        print(json.dumps({"saved_step": step, "weight": weight}), flush=True)
        save_checkpoint(accelerator, args, step)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *map(int, sys.argv[3:]))
