"""The fixed validation samples a training run scores itself on."""

from __future__ import annotations

import argparse


def validation_source(args: argparse.Namespace) -> str:
    """What :func:`validation_samples` reads, in words (for logs and model cards)."""
    if not args.validation_dir:
        return "no validation set"
    if args.dataset == "dpdd":
        return f"DPDD's validation split (val_c, full images) of {args.dpdd_root}"
    return str(args.validation_dir)


def validation_samples(args: argparse.Namespace, dp_views: bool = True) -> list[dict]:
    """The first ``--num_validation_samples`` samples of the validation set (none when ``--validation_dir`` is
    empty): with ``--dataset dpdd`` DPDD's own validation split (``val_c``, full images, no true CoC maps; the
    views only with ``dp_views``), otherwise the synthetic set in ``--validation_dir``."""
    if not args.validation_dir:
        return []
    if args.dataset == "dpdd":
        from ..data import DPDDDataset

        if not args.dpdd_root:
            raise SystemExit("--dataset dpdd needs --dpdd_root (the dd_dp_dataset_canon folder).")
        dpdd_val = DPDDDataset(args.dpdd_root, split="val", crop_size=None, with_dp_views=dp_views)
        return [dpdd_val[i] for i in range(min(args.num_validation_samples, len(dpdd_val)))]
    from ..data import ValidationSet

    validation_set = ValidationSet(args.validation_dir)
    return [validation_set[i] for i in range(min(args.num_validation_samples, len(validation_set)))]
