"""A picture of synthetic dual-pixel samples: sharp / blurred / left / right / signed CoC, one row per sample.

    python -m defocusgan_hf.data.preview --valset data/synthetic_val --indices 0 1 2 \
        --output docs/images/synthetic_samples.png

Without ``--valset`` the samples are rendered on the fly (``--seed``, ``--resolution``, ``--data_config``: the
training engine ``varied`` or the first one, ``eq3``; ``--image_dir`` adds a folder of sharp photos)::

    python -m defocusgan_hf.data.preview --data_config varied --image_dir data/photos --indices 0 1 2 3 4 5 \
        --seed 7 --output docs/images/synthetic_varied.png
    python -m defocusgan_hf.data.preview --psf_families --output docs/images/psf_families.png
 ``--defocus_models
LABEL=FOLDER ...`` adds, per stage-1 net (a ``DualPixelDefocusNet`` folder or a pipeline folder with
``defocus_net/``), a column with its signed map estimated from the two views, in the true map's colours.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from .config import DualPixelConfig
from .datasets import SyntheticDualPixelDataset

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


def psf_family_figure(radius: float = 10.0, draws: int = 3, seed: int = 0):
    """A matplotlib ``Figure`` of the synthetic engine's PSF families (:mod:`.psf_families`) at one radius (px):
    a row per family, the first column with its default parameters, then ``draws`` random draws of them."""
    from matplotlib.figure import Figure

    from .psf_families import PSF_FAMILIES, PSFShape, combined_psf, sample_psf_shape

    figure = Figure(figsize=(1.6 * (draws + 1), 1.6 * len(PSF_FAMILIES)), dpi=100, layout="constrained")
    axes = figure.subplots(len(PSF_FAMILIES), draws + 1, squeeze=False)
    generator = torch.Generator().manual_seed(seed)
    for row, family in enumerate(PSF_FAMILIES):
        shapes = [PSFShape(family)] + [sample_psf_shape(generator, (family,)) for _ in range(draws)]
        for column, shape in enumerate(shapes):
            axes[row, column].imshow(combined_psf(radius, shape).numpy(), cmap="gray")
            axes[row, column].set_axis_off()
        axes[row, 0].set_title(f"{family} (r = {radius:g} px)", fontsize=8, loc="left")
    return figure


def _label(axis, text: str) -> None:
    height = axis.get_images()[-1].get_array().shape[0]
    axis.text(2, height - 4, text, fontsize=7, color="black",
              bbox={"facecolor": "white", "alpha": 0.7, "linewidth": 0, "pad": 1})  # fmt: skip


def estimate_maps(folder: str, samples: list[dict]) -> list:
    """Signed CoC maps ``(H, W)`` (px, NumPy) of a stage-1 net folder (or a pipeline folder with defocus_net/)."""
    from ..pipelines.loading import load_defocus_net

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
    parser.add_argument(
        "--data_config",
        choices=["varied", "eq3"],
        default="eq3",
        help="Engine when rendering on the fly: DualPixelConfig.varied() or the first (Eq. 3).",
    )
    parser.add_argument("--image_dir", default=None, help="Extra folder of sharp photos when rendering on the fly.")
    parser.add_argument("--psf_families", action="store_true", help="Draw the PSF families instead of samples.")
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
    if args.psf_families:
        output.parent.mkdir(parents=True, exist_ok=True)
        psf_family_figure(seed=args.seed).savefig(output, dpi=100)
        print(f"Wrote {output}")
        return
    if args.valset:
        from .validation_set import ValidationSet

        dataset = ValidationSet(args.valset)
        max_coc = dataset.config.max_coc
    else:
        config = DualPixelConfig.varied() if args.data_config == "varied" else DualPixelConfig()
        sources = ["skimage:val", "dead_leaves", "text"] + ([args.image_dir] if args.image_dir else [])
        dataset = SyntheticDualPixelDataset(sources, args.resolution, max(args.indices) + 1, args.seed, config=config)
        max_coc = dataset.config.max_coc
    samples = [dataset[i] for i in args.indices]
    estimates = {label: estimate_maps(folder, samples) for label, folder in models.items()}
    figure = preview_figure(samples, max_coc, estimates=estimates)
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=100)
    print(f"Wrote {output}")


if __name__ == "__main__":
    main()
