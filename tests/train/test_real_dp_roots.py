"""Stage 1's real DP roots: --real_dp_root may be repeated, --real_dp_scenes and --real_dp_view_order are matched to
the roots by position (or one value applies to all), and the captures of every root are pooled into one run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "train"))
import train_defocus_map as stage1  # noqa: E402


def test_one_root_keeps_the_single_root_defaults():
    args = stage1.parse_args(["--real_dp_root", "a", "--real_dp_scenes", "01,02"])
    assert args.real_dp_sources == [("a", ["01", "02"], "detect")]
    assert stage1.parse_args(["--real_dp_root", "a"]).real_dp_sources == [("a", None, "detect")]
    assert stage1.parse_args([]).real_dp_sources == [] and stage1.parse_args([]).real_dp_every == 2


def test_scenes_and_view_orders_match_the_roots_by_position_or_apply_to_all():
    args = stage1.parse_args(
        ["--real_dp_root", "gif", "--real_dp_scenes", "00,01", "--real_dp_root", "pixel4", "--real_dp_scenes",
         "001,002", "--real_dp_view_order", "detect", "--real_dp_view_order", "a_left"]
    )  # fmt: skip
    assert args.real_dp_sources == [("gif", ["00", "01"], "detect"), ("pixel4", ["001", "002"], "a_left")]
    args = stage1.parse_args(["--real_dp_root", "x", "--real_dp_root", "y", "--real_dp_view_order", "a_left"])
    assert args.real_dp_sources == [("x", None, "a_left"), ("y", None, "a_left")]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--real_dp_root", "x", "--real_dp_root", "y", "--real_dp_root", "z", "--real_dp_scenes", "1",
          "--real_dp_scenes", "2"], "--real_dp_scenes is given 2 times for 3"),
        (["--real_dp_root", "x", "--real_dp_view_order", "a_left", "--real_dp_view_order", "detect"],
         "--real_dp_view_order is given 2 times for 1"),
        (["--real_dp_root", "x", "--real_dp_view_order", "b_left"], "invalid choice: 'b_left'"),
        (["--real_dp_view_order", "a_left"], "--real_dp_view_order needs --real_dp_root"),
    ],
)  # fmt: skip
def test_mismatched_counts_and_unknown_view_orders_are_parser_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as error:
        stage1.parse_args(argv)
    assert error.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.slow  # a training subprocess
def test_stage1_pools_the_captures_of_two_roots(tmp_path):
    rng = np.random.default_rng(1)
    for root, names in (("gif", ("00", "01")), ("pixel4", ("001", "002"))):
        for name in names:
            folder = tmp_path / root / name
            folder.mkdir(parents=True)
            for file in ("dp_a.png", "dp_b.png", "sharp.png", "blurred.png"):  # 16-bit grey, as the Pixel 4 scenes
                Image.fromarray((rng.random((40, 48)) * 65535).astype(np.uint16)).save(folder / file)
    out = tmp_path / "stage1"
    command = [
        sys.executable, str(ROOT / "train" / "train_defocus_map.py"), "--output_dir", str(out),
        "--model_config", '{"level_channels": [4, 8, 8], "branch_depths": [1, 1]}', "--max_coc", "6",
        "--real_dp_root", str(tmp_path / "gif"), "--real_dp_scenes", "01",
        "--real_dp_root", str(tmp_path / "pixel4"), "--real_dp_scenes", "001,002",
        "--real_dp_view_order", "detect", "--real_dp_view_order", "a_left", "--real_dp_every", "1",
        "--data_config", "varied+phone_dual_pixel", "--max_train_steps", "3", "--validation_dir", "",
        "--resolution", "32", "--train_batch_size", "2", "--num_threads", "1", "--logging_steps", "1",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        "Real DP captures: gif/01" in result.stderr and "pixel4/001, pixel4/002 (dp_a taken as left)" in result.stderr
    )
    assert "gif/00" not in result.stderr  # held out
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    losses = [row["loss/total"] for row in rows if "loss/total" in row]
    assert len(losses) == 3 and all(np.isfinite(losses))
