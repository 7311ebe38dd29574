"""train/ablations.py end to end on a tiny configuration: every Table 4 and Table 6 arm trains the same number of
steps, is evaluated with defocusgan-eval, and lands in one Markdown table with comparable parameter counts."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "train"))
import ablations  # noqa: E402
import train_defocusgan as stage2  # noqa: E402

from defocusgan_hf.evaluation.__main__ import main as evaluate  # noqa: E402

pytestmark = pytest.mark.slow  # six tiny trainings and evaluations (in this process, to spare the imports)
TINY_GENERATOR = '{"level_channels": [4, 4, 8, 8, 8], "branch_depths": [0, 1, 1, 1]}'


@pytest.fixture
def valset(tmp_path):
    from defocusgan_hf.data.validation_set import main as write_valset

    folder = tmp_path / "val"
    write_valset(["--output_dir", str(folder), "--num_samples", "2", "--resolution", "32", "--max_coc", "6"])
    return folder


@pytest.fixture
def two_real_scenes(real_scenes):
    """Two fabricated real-scene folders (blurred.png / sharp.png), the layout of ../shared/real/dpdd_gif."""
    return real_scenes(("00", "01"), (32, 40), folder="real")


def in_process(commands):
    """``ablations.run`` without subprocesses: the same scripts' ``main`` with the same arguments."""

    def run(command):
        commands.append(command)
        if command[1].endswith("train_defocusgan.py"):
            stage2.main(stage2.parse_args(command[2:]))
        else:
            assert command[1:3] == ["-m", "defocusgan_hf.evaluation"]
            assert evaluate(command[3:]) in (0, None)

    return run


def test_every_arm_trains_equal_steps_and_lands_in_one_table(tmp_path, valset, two_real_scenes, monkeypatch):
    commands = []
    monkeypatch.setattr(ablations, "run", in_process(commands))
    out = tmp_path / "ablations"
    argv = ["--output_dir", str(out), "--max_train_steps", "2", "--eval_root", str(valset), "--real_eval_root",
            str(two_real_scenes), "--", "--model_config",
            TINY_GENERATOR, "--resolution", "32", "--train_batch_size", "1", "--lambda_perceptual", "0", "--lambda_adv",
            "0", "--validation_dir", "", "--checkpointing_steps", "100", "--num_threads", "1"]  # fmt: skip
    rows = ablations.main(argv)
    assert [r["arm"] for r in rows] == list(ablations.ARMS)
    trainings = [c for c in commands if c[1].endswith("train_defocusgan.py")]
    assert len(trainings) == 6 and all(c[c.index("--max_train_steps") + 1] == "2" for c in trainings)
    for arm in ablations.ARMS:
        log = [json.loads(line) for line in (out / arm / "train_log.jsonl").read_text().splitlines()]
        assert max(row["step"] for row in log) == 2
    # Table 6's arms train with the adversarial loss on (the last --lambda_adv wins), Table 4's with the shared flags
    uniform = stage2.parse_args(trainings[-1][2:])
    assert uniform.lambda_adv == 0.002 and uniform.adversarial_loss == "uniform"
    by_arm = {r["arm"]: r for r in rows}
    assert abs(by_arm["single_scale"]["parameters"] / by_arm["full"]["parameters"] - 1) < 0.05
    assert by_arm["no_rcab"]["parameters"] < by_arm["full"]["parameters"]
    assert all(0 < r["psnr"] < 100 for r in rows)
    # every arm is measured on the real scenes too, beside the synthetic figure
    assert sum(c[1:3] == ["-m", "defocusgan_hf.evaluation"] and "real" in c for c in commands) == 6
    assert all(abs(r["real_gain"]) < 20 and 0 <= r["real_worse"] <= 2 and r["real_sharp_in"] > 10 for r in rows)
    table = (out / "ablations.md").read_text()
    assert "at 2 steps per arm" in table and table.count("| Table 4 |") == 4 and table.count("| Table 6 |") == 2
    assert "real gain (dB)" in table and f"real scenes `{two_real_scenes}`" in table
    # a second call reuses the finished arms: nothing is trained or evaluated again
    commands.clear()
    assert ablations.main(argv) == rows and commands == []
