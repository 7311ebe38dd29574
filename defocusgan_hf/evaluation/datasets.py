"""The evaluation data: the synthetic validation set, the DPDD test scenes (indoor / outdoor) or a folder of pairs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .metrics import DPDD_TEST_SIZE, dpdd_scene_group


@dataclass
class EvalData:
    """Samples to evaluate and how to group them."""

    dataset: Any
    kind: str
    indices: list[int]
    groups: tuple[str, ...] = ("all",)
    group_of: Callable[[int], str] = field(default=lambda index: "all")
    has_coc: bool = False
    has_dp_views: bool = False
    note: str = ""


def open_dataset(kind: str, root: str, need_dp_views: bool = False, max_images: int | None = None) -> EvalData:
    """The evaluation data: ``"synthetic"`` (a validation set folder), ``"dpdd"`` (the 76 full-size test scenes,
    indoor/outdoor) or ``"folder"`` (``root/blurred`` and ``root/sharp``, matched by file name)."""
    from ..data import DPDDDataset, PairedFolderDataset, ValidationSet

    if kind == "synthetic":
        dataset = ValidationSet(root)
        data = EvalData(dataset, kind, list(range(len(dataset))), has_coc=True, has_dp_views=True)
    elif kind == "dpdd":
        dataset = DPDDDataset(root, split="test", crop_size=None, with_dp_views=need_dp_views, augment=False)
        data = EvalData(dataset, kind, list(range(len(dataset))), has_dp_views=need_dp_views)
        if len(dataset) == DPDD_TEST_SIZE:
            data.groups, data.group_of = ("indoor", "outdoor", "all"), dpdd_scene_group
        else:
            data.note = (
                f"indoor/outdoor split not applied: it is defined on the {DPDD_TEST_SIZE} DPDD test scenes, "
                f"found {len(dataset)}"
            )
    elif kind == "folder":
        root_path = Path(root)
        dataset = PairedFolderDataset(root_path / "blurred", root_path / "sharp")
        data = EvalData(dataset, kind, list(range(len(dataset))))
    else:
        raise ValueError(f"`dataset` must be 'synthetic', 'dpdd' or 'folder', got {kind!r}.")
    if max_images is not None:
        data.indices = data.indices[:max_images]
    return data


def mean_abs_coc_of(data: EvalData) -> float:
    """Mean |CoC| in px over every pixel of the evaluated samples' true maps."""
    if not data.has_coc:
        raise ValueError(f"A mean-map row needs ground-truth CoC maps, which the {data.kind} data lacks.")
    return float(np.mean([data.dataset.coc(i).abs().numpy().mean() for i in data.indices]))
