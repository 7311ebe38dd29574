"""The checkpoint's README.md is generated from its model card (defocusgan_hf.training.model_card), never
edited apart."""

from pathlib import Path

from defocusgan_hf.training.model_card import CARDS, ROOT, checkpoint_card, relocate_links


def test_checkpoint_readmes_are_generated_from_the_model_cards():
    for source, target in CARDS.items():
        assert (ROOT / target).read_text() == checkpoint_card(source), (
            "run `python -m defocusgan_hf.training.model_card`"
        )


def test_links_are_rewritten_for_the_new_folder():
    text = "[a](../README.md) ![b](../checkpoints/x/p.png) [c](https://h.org/a) [d](#top)"
    moved = relocate_links(text, Path("/r/model_cards"), Path("/r/checkpoints/x"))
    assert moved == "[a](../../README.md) ![b](p.png) [c](https://h.org/a) [d](#top)"
