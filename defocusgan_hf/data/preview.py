"""A picture of synthetic dual-pixel samples: sharp / blurred / left / right / signed CoC, one row per sample.

    python -m defocusgan_hf.data.preview --valset data/synthetic_val --indices 0 1 2 \
        --output docs/images/synthetic_samples.png

Without ``--valset`` the samples are rendered on the fly (``--seed``, ``--resolution``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from .synthetic import SyntheticDualPixelDataset

COLUMNS = (("sharp", "sharp (target)"), ("blurred", "blurred = (L + R) / 2"), ("left", "left view"),
           ("right", "right view"))  # fmt: skip


def preview_figure(samples: list[dict], max_coc: float = 25.0, panel_inches: float = 2.2):
    """A matplotlib ``Figure`` with one row per sample dict (keys sharp, blurred, left, right, coc)."""
    from matplotlib.figure import Figure

    rows = len(samples)
    figure = Figure(figsize=(panel_inches * 5 + 0.9, panel_inches * rows + 0.35), dpi=100, layout="constrained")
    axes = figure.subplots(rows, 5, squeeze=False)
    mappable = None
    for row, sample in enumerate(samples):
        for column, (key, title) in enumerate(COLUMNS):
            axes[row, column].imshow(sample[key].permute(1, 2, 0).clamp(0, 1).numpy())
            if row == 0:
                axes[row, column].set_title(title, fontsize=10)
        coc = sample["coc"][0].numpy()
        mappable = axes[row, 4].imshow(coc, cmap="RdBu_r", vmin=-max_coc, vmax=max_coc)
        if row == 0:
            axes[row, 4].set_title("signed CoC (px)", fontsize=10)
        axes[row, 4].text(
            2, coc.shape[0] - 4, f"{coc.min():+.1f} … {coc.max():+.1f} px", fontsize=7, color="black",
            bbox={"facecolor": "white", "alpha": 0.7, "linewidth": 0, "pad": 1},
        )  # fmt: skip
        for axis in axes[row]:
            axis.set_axis_off()
    bar = figure.colorbar(mappable, ax=axes[:, 4], shrink=0.8, aspect=30)
    bar.set_label("CoC radius (px): − near, + far", fontsize=9)
    return figure


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Draw a grid of synthetic dual-pixel samples.")
    parser.add_argument("--output", type=str, default="docs/images/synthetic_samples.png", help="PNG to write.")
    parser.add_argument("--valset", type=str, default=None, help="Read samples from this validation set folder.")
    parser.add_argument("--indices", type=int, nargs="+", default=[0, 1, 2], help="Sample indices to show.")
    parser.add_argument("--seed", type=int, default=1234, help="Seed when rendering on the fly.")
    parser.add_argument("--resolution", type=int, default=256, help="Resolution when rendering on the fly.")
    parser.add_argument("--overwrite", action="store_true", help="Replace an existing output file.")
    args = parser.parse_args(argv)
    output = Path(args.output)
    if output.exists() and not args.overwrite:
        raise FileExistsError(f"'{output}' already exists; pass --overwrite to replace it.")
    torch.set_num_threads(1)
    if args.valset:
        from .validation_set import ValidationSet

        dataset = ValidationSet(args.valset)
        max_coc = dataset.config.max_coc
    else:
        dataset = SyntheticDualPixelDataset(
            ("skimage:val", "dead_leaves", "text"), args.resolution, max(args.indices) + 1, args.seed
        )
        max_coc = dataset.config.max_coc
    figure = preview_figure([dataset[i] for i in args.indices], max_coc)
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=100)
    print(f"Wrote {output}")


if __name__ == "__main__":
    main()
