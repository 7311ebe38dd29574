"""Checkpoints are written atomically and resumed from the newest complete one: a run killed (SIGKILL) in the
middle of a save, EMA weights as safetensors, and the training log cut back to the resumed step."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from defocusgan_hf.training.checkpoints import is_complete, list_checkpoints, resolve_resume

CHILD = Path(__file__).with_name("checkpoint_child.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1"}


def test_a_kill_during_the_save_leaves_the_previous_checkpoint_resumable(tmp_path):
    """``--checkpoints_total_limit 1``: checkpoint-1 must survive until checkpoint-2 is whole, and ``latest`` must
    not pick the half-written one."""
    out = tmp_path / "run"
    child = subprocess.Popen(
        [sys.executable, str(CHILD), "save", str(out), "1"], env=ENV, stdout=subprocess.PIPE, text=True
    )
    saved = {}
    try:
        for line in child.stdout:
            if line.startswith("SAVING"):
                break
            saved.update({json.loads(line)["saved_step"]: json.loads(line)["weight"]})
        else:
            pytest.fail(f"the child ended (rc {child.wait()}) before its second save")
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert [p.name for p in list_checkpoints(out)] == ["checkpoint-1"] and is_complete(out / "checkpoint-1")
    assert (out / ".checkpoint-2.incomplete" / "deblur_net").is_dir()  # killed half-way through

    resumed = subprocess.run([sys.executable, str(CHILD), "resume", str(out)], env=ENV, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    report = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert report["resumed"] == "checkpoint-1" and report["step"] == 1 and report["ema_step"] == 1
    assert report["weight"] == pytest.approx(saved[1], abs=1e-9)
    checkpoint = out / "checkpoint-1"
    assert (checkpoint / "deblur_net_ema" / "diffusion_pytorch_model.safetensors").is_file()
    assert (checkpoint / "deblur_net_ema" / "ema_state.json").is_file() and not list(
        checkpoint.glob("custom_checkpoint_*")
    )


def test_latest_skips_an_incomplete_checkpoint_with_a_warning(tmp_path, caplog):
    for step, complete in ((2, True), (4, True), (6, False)):
        (tmp_path / f"checkpoint-{step}").mkdir()
        if complete:
            (tmp_path / f"checkpoint-{step}" / "step.json").write_text(json.dumps({"step": step}))
    args = argparse.Namespace(output_dir=str(tmp_path), resume_from_checkpoint="latest")
    with caplog.at_level("WARNING"):
        assert resolve_resume(args) == tmp_path / "checkpoint-4"
    assert "checkpoint-6" in caplog.text and "incomplete" in caplog.text
    with pytest.raises(SystemExit, match="incomplete"):
        resolve_resume(
            argparse.Namespace(output_dir=str(tmp_path), resume_from_checkpoint=str(tmp_path / "checkpoint-6"))
        )


def test_resuming_cuts_the_log_back_to_the_checkpoint_and_keeps_the_rest_aside(tmp_path):
    log = tmp_path / "train_log.jsonl"
    log.write_text(
        "".join(json.dumps({"step": s, "loss/total": s / 10}) + "\n" for s in range(1, 8)) + '{"step": 8, "lo'
    )
    (tmp_path / "checkpoint-4").mkdir()
    (tmp_path / "checkpoint-4" / "step.json").write_text(json.dumps({"step": 4}))
    assert resolve_resume(argparse.Namespace(output_dir=str(tmp_path), resume_from_checkpoint="latest"))
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [1, 2, 3, 4]
    superseded = (tmp_path / "train_log.superseded.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in superseded[:3]] == [5, 6, 7] and len(superseded) == 4
