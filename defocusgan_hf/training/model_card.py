"""Model cards. One source for each: ``model_cards/<name>.md`` is written by hand, and the README.md of the checkpoint
folder it describes is generated from it, with its relative links rewritten for the folder's place; and the card
that a training run writes into the pipeline folder it exports (:func:`write_model_card`).

    python -m defocusgan_hf.training.model_card   # regenerates checkpoints/defocusgan-synthetic/README.md

tests/test_model_card.py checks that the two are in sync.
"""

from __future__ import annotations

import math
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CARDS = {"model_cards/defocusgan-synthetic.md": "checkpoints/defocusgan-synthetic/README.md"}
"""Hand-written card (relative to the repository) -> the generated README.md of its checkpoint folder."""
_LINK = re.compile(r"(!?\[[^\]]*\]\()([^)\s]+)(\))")


def relocate_links(text: str, source_dir: Path, target_dir: Path) -> str:
    """Rewrite the relative Markdown links of a file in ``source_dir`` so that they point to the same files from
    ``target_dir`` (absolute URLs and ``#anchors`` are kept)."""

    def move(match: re.Match) -> str:
        link = match.group(2)
        if re.match(r"^[a-z][a-z0-9+.-]*:", link) or link.startswith(("#", "/")):
            return match.group(0)
        path, hash_, anchor = link.partition("#")
        moved = Path(os.path.relpath(os.path.normpath(source_dir / path), target_dir)).as_posix()
        return f"{match.group(1)}{moved}{hash_}{anchor}{match.group(3)}"

    return _LINK.sub(move, text)


def checkpoint_card(source: str, root: Path = ROOT) -> str:
    """The README.md text of ``CARDS[source]``'s folder, generated from the card ``source``."""
    text = (root / source).read_text()
    return relocate_links(text, (root / source).parent, (root / CARDS[source]).parent)


def write_model_card(
    path: Path,
    *,
    title: str,
    description: str,
    metrics: dict[str, float],
    command: str,
    tags: list[str],
    base_model: str | None = None,
) -> None:
    """README.md in the Hub format (YAML card data + Markdown) for a trained pipeline folder."""
    from huggingface_hub import ModelCard, ModelCardData

    card_data = ModelCardData(
        library_name="defocusgan_hf",
        license="apache-2.0",
        pipeline_tag="image-to-image",
        tags=["defocus-deblurring", "dual-pixel", "image-restoration", *tags],
        base_model=base_model,
    )
    lines = "\n".join(
        f"| {k} | {v:.4g} |" for k, v in metrics.items() if isinstance(v, int | float) and math.isfinite(v)
    )
    content = (
        f"---\n{card_data.to_yaml()}\n---\n\n# {title}\n\n{description}\n\n"
        f"## Validation metrics\n\n| metric | value |\n|---|---|\n{lines}\n\n"
        f"## Reproduce\n\n```bash\n{command}\n```\n"
    )
    ModelCard(content).save(path / "README.md")


def main() -> int:
    for source, target in CARDS.items():
        (ROOT / target).write_text(checkpoint_card(source))
        print(f"wrote {target} from {source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
