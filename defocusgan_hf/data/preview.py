"""A picture of synthetic dual-pixel samples: sharp / blurred / left / right / signed CoC, one row per sample.

    python -m defocusgan_hf.data.preview --valset data/synthetic_val --indices 0 1 2 \
        --output docs/images/synthetic_samples.png

Without ``--valset`` the samples are rendered on the fly (``--seed``, ``--resolution``). ``--defocus_models
LABEL=FOLDER ...`` adds, per stage-1 net (a ``DualPixelDefocusNet`` folder or a pipeline folder with
``defocus_net/``), a column with its signed map estimated from the two views, in the true map's colours.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from .synthetic import SyntheticDualPixelDataset

COLUMNS = (("sharp", "sharp (target)"), ("blurred", "blurred = (L + R) / 2"), ("left", "left view"),
           ("right", "right view"))  # fmt: skip


def preview_figure(
    samples: list[dict], max_coc: float = 25.0, panel_inches: float = 2.2, estimates: dict | None = None
):
    """A matplotlib ``Figure`` with one row per sample dict (keys sharp, blurred, left, right, coc).

    ``estimates``: ``{label: [map per sample]}``, signed CoC maps ``(H, W)`` in px, drawn after the true map with
    their |CoC| and signed mean absolute errors against it."""
    from matplotlib.figure import Figure

    estimates = estimates or {}
    rows, columns = len(samples), 5 + len(estimates)
    figure = Figure(figsize=(panel_inches * columns + 0.9, panel_inches * rows + 0.35), dpi=100, layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
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
        _label(axes[row, 4], f"{coc.min():+.1f} … {coc.max():+.1f} px")
        for column, (label, maps) in enumerate(estimates.items(), start=5):
            estimate = maps[row]
            axes[row, column].imshow(estimate, cmap="RdBu_r", vmin=-max_coc, vmax=max_coc)
            if row == 0:
                axes[row, column].set_title(f"{label} (px)", fontsize=10)
            signed_error = float(abs(estimate - coc).mean())
            abs_error = float(abs(abs(estimate) - abs(coc)).mean())
            _label(axes[row, column], f"MAE |CoC| {abs_error:.2f}, signed {signed_error:.2f}")
        for axis in axes[row]:
            axis.set_axis_off()
    bar = figure.colorbar(mappable, ax=axes[:, -1], shrink=0.8, aspect=30)
    bar.set_label("CoC radius (px): − near, + far", fontsize=9)
    return figure


def _label(axis, text: str) -> None:
    height = axis.get_images()[-1].get_array().shape[0]
    axis.text(2, height - 4, text, fontsize=7, color="black",
              bbox={"facecolor": "white", "alpha": 0.7, "linewidth": 0, "pad": 1})  # fmt: skip


def estimate_maps(folder: str, samples: list[dict]) -> list:
    """Signed CoC maps ``(H, W)`` (px, NumPy) of a stage-1 net folder (or a pipeline folder with defocus_net/)."""
    from ..loading import load_defocus_net

    net = load_defocus_net(folder)
    with torch.no_grad():
        return [net(s["left"][None], s["right"][None]).defocus_map[0, 0].numpy() for s in samples]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Draw a grid of synthetic dual-pixel samples.")
    parser.add_argument("--output", type=str, default="docs/images/synthetic_samples.png", help="PNG to write.")
    parser.add_argument("--valset", type=str, default=None, help="Read samples from this validation set folder.")
    parser.add_argument("--indices", type=int, nargs="+", default=[0, 1, 2], help="Sample indices to show.")
    parser.add_argument("--seed", type=int, default=1234, help="Seed when rendering on the fly.")
    parser.add_argument("--resolution", type=int, default=256, help="Resolution when rendering on the fly.")
    parser.add_argument("--overwrite", action="store_true", help="Replace an existing output file.")
    parser.add_argument("--defocus_models", nargs="*", default=[], metavar="LABEL=FOLDER",
                        help="Stage-1 nets whose estimated maps get a column each.")  # fmt: skip
    args = parser.parse_args(argv)
    models = {}
    for item in args.defocus_models:
        label, sep, folder = item.partition("=")
        if not sep or not label or not folder:
            parser.error(f"--defocus_models takes LABEL=FOLDER, got {item!r}.")
        models[label] = folder
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
    samples = [dataset[i] for i in args.indices]
    estimates = {label: estimate_maps(folder, samples) for label, folder in models.items()}
    figure = preview_figure(samples, max_coc, estimates=estimates)
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=100)
    print(f"Wrote {output}")


if __name__ == "__main__":
    main()
