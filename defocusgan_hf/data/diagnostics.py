"""Diagnostics of the synthetic engine's output distribution.

:func:`brightness_bias`: is the blurred input systematically brighter or darker than its sharp target? A bias
that the data carry (e.g. highlights that the target clips but the input spreads as bokeh) teaches a deblurring
model to shift the brightness. Run it as::

    python -m defocusgan_hf.data.diagnostics --data_config varied [--change NAME] [--linear]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

import numpy as np
import torch

from .config import DATA_CONFIGS, DualPixelConfig
from .datasets import SyntheticDualPixelDataset
from .sources import DEFAULT_TRAIN_SOURCES

LINEAR = dict(gamma_range=(1.0, 1.0), tone_curve_range=(0.0, 0.0), noise_prob=0.0, jpeg_prob=0.0)
"""Changes that make :func:`brightness_bias` measure in linear light (the optics and clipping alone)."""


def brightness_bias(
    config: DualPixelConfig,
    n: int = 256,
    size: int = 128,
    seed: int = 0,
    sources: Sequence | str = DEFAULT_TRAIN_SOURCES,
) -> dict:
    """Mean of ``blurred - sharp`` in 8-bit levels (images in [0, 1] times 255) over ``n`` samples of ``size``²
    from :class:`~defocusgan_hf.data.datasets.SyntheticDualPixelDataset` (deterministic per ``seed``).

    Returns ``overall`` (all samples); ``highlights``, the samples whose above-white highlight gain changed the
    input or the target, and ``no_highlights``, the others, with their count; and ``highlight_effect``: on the
    highlight samples, the mean of ``blurred - sharp`` minus that of the same samples rendered without the gain
    (the same random stream with ``highlight_gain_range = (1, 1)``), i.e. the part of the bias the highlights
    cause. Each mean covers every pixel and channel of its samples; ``per_sample_std`` is the spread of the
    per-sample means.
    """
    if n < 1 or size < 16:
        raise ValueError(f"`n` must be positive and `size` at least 16 pixels, got n={n}, size={size}.")
    dataset = SyntheticDualPixelDataset(sources, resolution=size, length=n, seed=seed, config=config)
    twin = SyntheticDualPixelDataset(
        sources, resolution=size, length=n, seed=seed, config=config.replace(highlight_gain_range=(1.0, 1.0))
    )
    bias, twin_bias, boosted = np.zeros(n), np.zeros(n), np.zeros(n, dtype=bool)
    for index in range(n):
        sample = dataset[index]
        bias[index] = 255 * float((sample["blurred"].double() - sample["sharp"].double()).mean())
        if config.highlight_prob > 0:
            plain = twin[index]
            boosted[index] = any(not torch.equal(plain[k], sample[k]) for k in ("blurred", "sharp"))
            twin_bias[index] = 255 * float((plain["blurred"].double() - plain["sharp"].double()).mean())

    DEFAULTS = DualPixelConfig().to_dict()

    def mean(values: np.ndarray) -> float | None:
        return round(float(values.mean()), 4) if values.size else None

    return {
        "config_changes": {k: v for k, v in config.to_dict().items() if v != DEFAULTS.get(k)},
        "n": n,
        "size": size,
        "seed": seed,
        "overall": mean(bias),
        "per_sample_std": round(float(bias.std()), 4),
        "highlights": mean(bias[boosted]),
        "n_highlights": int(boosted.sum()),
        "no_highlights": mean(bias[~boosted]),
        "highlight_effect": mean(bias[boosted] - twin_bias[boosted]),
    }


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_config", choices=DATA_CONFIGS, default="varied")
    parser.add_argument("--change", action="append", default=[], help="An ENGINE_CHANGES name (repeatable).")
    parser.add_argument(
        "--linear", action="store_true", help="Measure in linear light: gamma 1, no tone curve, noise or JPEG."
    )
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    config = DualPixelConfig.named(args.data_config)
    for name in args.change:
        config = config.with_change(name)
    if args.linear:
        config = config.replace(**LINEAR)
    result = brightness_bias(config, args.n, args.size, args.seed)
    print(json.dumps(result))
    return result


__all__ = ["brightness_bias"]

if __name__ == "__main__":
    main()
