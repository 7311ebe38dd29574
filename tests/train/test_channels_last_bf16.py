"""--channels_last and --mixed_precision bf16 (the GPU recipes' settings) train the same nets: tiny configurations,
two steps each, in this process, compared with the plain fp32 run on the same seed and data."""

import json
import sys
from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState, GradientState

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "train"))
import train_defocus_map as stage1  # noqa: E402
import train_defocusgan as stage2  # noqa: E402

from defocusgan_hf.models import DefocusDeblurNet, DualPixelDefocusNet  # noqa: E402
from defocusgan_hf.training.args import memory_format  # noqa: E402

TINY_GENERATOR = '{"level_channels": [4, 4, 8, 8, 8], "branch_depths": [0, 1, 1, 1]}'
TINY_DEFOCUS = '{"level_channels": [4, 8, 8], "branch_depths": [1, 1]}'
COMMON = ["--resolution", "32", "--train_batch_size", "2", "--max_train_steps", "2", "--logging_steps", "1",
          "--validation_steps", "2", "--num_validation_samples", "2", "--num_threads", "1", "--seed", "5"]  # fmt: skip
CHANNELS_LAST_RTOL = 1e-5  # fp32 in either layout: the same arithmetic up to summation order (seen: <= 4e-7)
BF16_RTOL = 2e-2  # bf16 autocast keeps 8 bits of mantissa (2^-8 = 0.4 %) per operation (seen: <= 8e-4)


@pytest.fixture(scope="module")
def valset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("val") / "synthetic_val"
    from defocusgan_hf.data.validation_set import main as write_valset

    write_valset(["--output_dir", str(folder), "--num_samples", "2", "--resolution", "32", "--max_coc", "6"])
    return folder


@pytest.fixture
def layouts(monkeypatch):
    """Records, at every forward of the two trained nets, whether its first input and its first convolution's
    weights are in channels_last memory format."""
    seen = []

    def spy(cls):
        forward = cls.forward

        def recording(self, x, *args, **kwargs):
            weight = next(p for p in self.parameters() if p.dim() == 4)
            seen.append(all(t.is_contiguous(memory_format=torch.channels_last) for t in (x, weight)))
            return forward(self, x, *args, **kwargs)

        monkeypatch.setattr(cls, "forward", recording)

    spy(DefocusDeblurNet)
    spy(DualPixelDefocusNet)
    return seen


def train(script, output_dir: Path, flags: list[str]) -> dict[int, dict]:
    """Run ``script.main`` in this process (accelerate's state reset first, so each run picks its own precision);
    the rows of its train_log.jsonl by step, losses and validation merged."""
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    try:
        script.main(script.parse_args(["--output_dir", str(output_dir), *flags]))
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    rows: dict[int, dict] = {}
    for line in (output_dir / "train_log.jsonl").read_text().splitlines():
        row = json.loads(line)
        rows.setdefault(row["step"], {}).update(row)
    return rows


def assert_same_run(reference: dict, other: dict, keys: list[str], rtol: float) -> None:
    for step in (1, 2):
        for key in keys:
            assert other[step][key] == pytest.approx(reference[step][key], rel=rtol), (step, key)


def three_runs(script, tmp_path, flags, layouts):
    """The same tiny run contiguous fp32, channels-last fp32 and channels-last bf16; checks the nets saw the
    layout asked for (training steps and validation alike)."""
    plain = train(script, tmp_path / "plain", flags)
    assert layouts and not any(layouts)
    layouts.clear()
    fast = train(script, tmp_path / "channels_last", [*flags, "--channels_last"])
    assert layouts and all(layouts)
    bf16 = train(script, tmp_path / "bf16", [*flags, "--channels_last", "--mixed_precision", "bf16"])
    return plain, fast, bf16


def test_memory_format_follows_the_flag():
    assert memory_format(stage2.parse_args(["--channels_last", "--lambda_perceptual", "0"])) == torch.channels_last
    assert memory_format(stage1.parse_args([])) == torch.contiguous_format


def test_stage2_channels_last_and_bf16_steps_match_fp32(tmp_path, valset, layouts):
    flags = ["--model_config", TINY_GENERATOR, "--validation_dir", str(valset), "--lambda_perceptual", "0",
             "--lambda_adv", "0.002", "--critic_steps", "1", "--lambda_fft", "0.1", "--guidance_anneal_steps", "4",
             *COMMON]  # fmt: skip
    plain, fast, bf16 = three_runs(stage2, tmp_path, flags, layouts)
    losses = ["loss/total", "loss/content", "loss/fft"]
    assert_same_run(plain, fast, losses, CHANNELS_LAST_RTOL)
    assert fast[2]["val/psnr"] == pytest.approx(plain[2]["val/psnr"], rel=CHANNELS_LAST_RTOL)
    assert_same_run(plain, bf16, losses, BF16_RTOL)
    assert bf16[2]["val/psnr"] == pytest.approx(plain[2]["val/psnr"], rel=BF16_RTOL)
    assert bf16[1]["loss/total"] != plain[1]["loss/total"]  # the autocast did run in bf16
    assert bf16[2]["images_per_second"] > 0
    # Exported in the ordinary layout and fp32 (from_pretrained), whatever the training layout was.
    net = DefocusDeblurNet.from_pretrained(tmp_path / "bf16" / "pipeline", subfolder="deblur_net")
    assert net.head.weight.is_contiguous() and net.head.weight.dtype == torch.float32


def test_stage1_channels_last_and_bf16_steps_match_fp32(tmp_path, valset, layouts):
    flags = ["--model_config", TINY_DEFOCUS, "--max_coc", "6", "--validation_dir", str(valset), "--lambda_search",
             "0.2", "--search_window_sigma", "2", "--smoothness_start_step", "0", *COMMON]  # fmt: skip
    plain, fast, bf16 = three_runs(stage1, tmp_path, flags, layouts)
    losses = ["loss/total", "loss/reblur", "loss/search"]
    assert_same_run(plain, fast, losses, CHANNELS_LAST_RTOL)
    assert fast[2]["val/reblur_l1"] == pytest.approx(plain[2]["val/reblur_l1"], rel=CHANNELS_LAST_RTOL)
    assert_same_run(plain, bf16, losses, BF16_RTOL)
    assert bf16[2]["val/coc_abs_mae_px"] == pytest.approx(plain[2]["val/coc_abs_mae_px"], rel=BF16_RTOL)
    assert bf16[1]["loss/total"] != plain[1]["loss/total"]
    net = DualPixelDefocusNet.from_pretrained(tmp_path / "bf16" / "defocus_net")
    assert all(p.is_contiguous() for p in net.parameters())
