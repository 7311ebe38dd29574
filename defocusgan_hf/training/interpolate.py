"""Weight interpolation of two generators fine-tuned from the same start (WiSE-FT, Wortsman et al., CVPR 2022):
``alpha * A + (1 - alpha) * B``, weight by weight, written as a pipeline folder.

A fine-tune that gains on real blur also changes more of what is already sharp; interpolating it with the
generator it started from keeps most of the gain and moves in-focus content less (the real-blur issue's
do-no-harm figures). Both folders must hold a ``deblur_net`` of the same architecture; everything else (the stage-1
net, the kernel, the model card) is copied from ``A``, and ``A``'s ``deblur_net`` config is kept (its
``residual_lowpass_sigma`` included, unless ``--residual_lowpass_sigma`` sets it: the shipped generator's recipe).

    python -m defocusgan_hf.training.interpolate runs/finetune/pipeline checkpoints/defocusgan-synthetic \\
        --alpha 0.5 --output_dir runs/interpolated --save_dtype fp16 --residual_lowpass_sigma 16

Hand-rolled because no library we depend on interpolates two diffusers ``ModelMixin`` state dicts: it is one
weighted sum per tensor, done in fp32.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch

from ..models import DefocusDeblurNet


def interpolate_state_dicts(a: dict, b: dict, alpha: float) -> dict[str, torch.Tensor]:
    """``alpha * a + (1 - alpha) * b`` per tensor, in fp32, returned in ``a``'s dtypes; ``alpha`` in [0, 1]."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
    if a.keys() != b.keys():
        raise ValueError(f"the two state dicts differ in {sorted(set(a) ^ set(b))[:5]}: not the same architecture.")
    out = {}
    for key, tensor in a.items():
        if tensor.shape != b[key].shape:
            raise ValueError(f"{key}: shapes {tuple(tensor.shape)} and {tuple(b[key].shape)} differ.")
        if not tensor.is_floating_point() or alpha == 1.0:  # integer buffers are A's
            out[key] = tensor.clone()
        elif alpha == 0.0:
            out[key] = b[key].to(tensor.dtype).clone()
        else:
            out[key] = (alpha * tensor.float() + (1 - alpha) * b[key].float()).to(tensor.dtype)
    return out


def interpolate_pipelines(
    a: str | Path,
    b: str | Path,
    alpha: float,
    output_dir: str | Path,
    save_dtype=None,
    residual_lowpass_sigma: float | None = None,
) -> Path:
    """Write ``output_dir``: pipeline folder ``a`` with its ``deblur_net`` weights interpolated towards ``b``'s.

    ``save_dtype`` (``torch.float16`` or None: ``a``'s) is the stored dtype. ``residual_lowpass_sigma`` (px, > 0;
    None keeps ``a``'s) sets the brightness-preserving output in the written config. ``output_dir`` must not exist.
    """
    a, b, output_dir = Path(a), Path(b), Path(output_dir)
    if output_dir.exists():
        raise FileExistsError(f"{output_dir} exists; choose a new folder (nothing is overwritten).")
    for folder in (a, b):
        if not (folder / "deblur_net" / "config.json").is_file():
            raise FileNotFoundError(f"{folder} has no deblur_net/config.json: not a pipeline folder.")
    overrides = {} if residual_lowpass_sigma is None else {"residual_lowpass_sigma": residual_lowpass_sigma}
    net_a = DefocusDeblurNet.from_pretrained(a, subfolder="deblur_net", **overrides).float()
    net_b = DefocusDeblurNet.from_pretrained(b, subfolder="deblur_net").float()
    net_a.load_state_dict(interpolate_state_dicts(net_a.state_dict(), net_b.state_dict(), alpha))
    shutil.copytree(a, output_dir, ignore=shutil.ignore_patterns("deblur_net"))
    if save_dtype is not None:
        net_a = net_a.to(save_dtype)
    net_a.save_pretrained(output_dir / "deblur_net")
    return output_dir


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", help="Pipeline folder A (the fine-tune; its other components and config are kept).")
    parser.add_argument("b", help="Pipeline folder B (the generator A started from).")
    parser.add_argument("--alpha", type=float, required=True, help="Weight of A, in [0, 1] (1: A, 0: B's weights).")
    parser.add_argument("--output_dir", required=True, help="New pipeline folder (must not exist).")
    parser.add_argument("--save_dtype", choices=["fp32", "fp16"], default="fp32", help="Stored dtype.")
    parser.add_argument(
        "--residual_lowpass_sigma",
        type=float,
        default=None,
        help="Set the written generator's brightness-preserving output (px; default: A's config).",
    )
    args = parser.parse_args(argv)
    dtype = torch.float16 if args.save_dtype == "fp16" else torch.float32
    sigma = args.residual_lowpass_sigma
    print(interpolate_pipelines(args.a, args.b, args.alpha, args.output_dir, dtype, residual_lowpass_sigma=sigma))


if __name__ == "__main__":
    main()
