"""The sample picture of the data engine, with the estimated maps of stage-1 nets beside the true map."""

import pytest
import torch
from PIL import Image

from defocusgan_hf.data.preview import main, preview_figure
from defocusgan_hf.models import DualPixelDefocusNet


@pytest.fixture(scope="module")
def valset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("val") / "synthetic_val"
    from defocusgan_hf.data.validation_set import main as write_valset

    write_valset(["--output_dir", str(folder), "--num_samples", "2", "--resolution", "32", "--max_coc", "6"])
    return folder


def test_preview_adds_a_column_per_defocus_net_and_keeps_existing_files(valset, tmp_path):
    torch.manual_seed(0)
    DualPixelDefocusNet(max_coc=6, level_channels=(4, 8, 8), branch_depths=(1, 1)).save_pretrained(tmp_path / "net")
    plain, compared = tmp_path / "plain.png", tmp_path / "compared.png"
    main(["--valset", str(valset), "--indices", "0", "1", "--output", str(plain)])
    main(
        [
            "--valset",
            str(valset),
            "--indices",
            "0",
            "1",
            "--output",
            str(compared),
            "--defocus_models",
            f"tiny={tmp_path / 'net'}",
        ]
    )
    with Image.open(plain) as a, Image.open(compared) as b:
        assert b.width > a.width and b.height == a.height  # one more column, same rows
    with pytest.raises(FileExistsError):
        main(["--valset", str(valset), "--output", str(plain)])
    with pytest.raises(SystemExit):
        main(["--valset", str(valset), "--output", str(tmp_path / "x.png"), "--defocus_models", "no-equals-sign"])


def test_preview_labels_each_estimate_with_its_errors():
    sample = {k: torch.zeros(3, 8, 8) for k in ("sharp", "blurred", "left", "right")}
    sample["coc"] = torch.full((1, 8, 8), 2.0)
    figure = preview_figure([sample], max_coc=6, estimates={"net": [-torch.full((8, 8), 2.0).numpy()]})
    texts = [t.get_text() for axis in figure.axes for t in axis.texts]
    assert "MAE |CoC| 0.00, signed 4.00" in texts  # right radius, wrong side of focus


def test_psf_family_picture_and_varied_samples(tmp_path):
    from defocusgan_hf.data.preview import main, psf_family_figure
    from defocusgan_hf.data.psf_families import PSF_FAMILIES

    figure = psf_family_figure(radius=4, draws=1)
    assert len(figure.axes) == 2 * len(PSF_FAMILIES)
    main(["--data_config", "varied", "--indices", "0", "--resolution", "32", "--output", str(tmp_path / "v.png")])
    assert (tmp_path / "v.png").stat().st_size > 0
