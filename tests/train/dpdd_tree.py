"""A tiny fabricated DPDD tree for the training tests (the real one is never downloaded in tests)."""

import numpy as np
from PIL import Image

DPDD_NAMES = ("1P0A0917", "1P0A0920", "1P0A1002", "1P0A1011", "1P0A1030")


def write_dpdd(root, splits=("train", "val"), names=DPDD_NAMES, size=(40, 48)):
    """``root/dd_dp_dataset_canon/{split}_{c,l,r}/...`` with random 8-bit images, the same name in every folder;
    the combined image is the mean of the views, the target a smooth version of nothing in particular."""
    canon = root / "dd_dp_dataset_canon"
    rng = np.random.default_rng(0)
    for split in splits:
        for name in names:
            images = {role: rng.integers(0, 256, (*size, 3), dtype=np.uint8) for role in ("l", "r", "target")}
            images["source"] = ((images["l"].astype(np.uint16) + images["r"]) // 2).astype(np.uint8)
            for folder, role in (("c/source", "source"), ("c/target", "target"), ("l/source", "l"), ("r/source", "r")):
                view, kind = folder.split("/")
                path = canon / f"{split}_{view}" / kind / f"{name}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(images[role]).save(path)
    return canon
