"""The training scripts run end to end on tiny configurations: a few steps, checkpoints, exact resume, two processes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow  # minutes of CPU (training subprocesses) or the shipped checkpoints; CI runs them
ROOT = Path(__file__).resolve().parents[2]
TINY_GENERATOR = '{"level_channels": [4, 4, 8, 8, 8], "branch_depths": [0, 1, 1, 1]}'
TINY_DEFOCUS = '{"level_channels": [4, 8, 8], "branch_depths": [1, 1]}'
COMMON = ["--resolution", "32", "--train_batch_size", "2", "--logging_steps", "1", "--num_threads", "1", "--seed", "3"]


@pytest.fixture(scope="module")
def valset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("val") / "synthetic_val"
    from defocusgan_hf.data.validation_set import main as write_valset

    write_valset(["--output_dir", str(folder), "--num_samples", "2", "--resolution", "32", "--max_coc", "6"])
    return folder


def launch(script, args, processes=1, timeout=300):
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    if processes == 1:
        command = [sys.executable, str(ROOT / "train" / script), *args]
    else:
        command = [
            sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            str(ROOT / "train" / script), *args,
        ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def read_log(output_dir):
    rows = [json.loads(line) for line in (Path(output_dir) / "train_log.jsonl").read_text().splitlines()]
    return {row["step"]: row for row in rows if "loss/total" in row}


def test_defocusgan_resume_continues_with_the_same_losses(tmp_path, valset):
    out = tmp_path / "gan"
    args = [
        "--output_dir", str(out), "--model_config", TINY_GENERATOR, "--max_train_steps", "4",
        "--checkpointing_steps", "2",
        "--validation_dir", str(valset), "--validation_steps", "4", "--lambda_perceptual", "0", "--lambda_adv", "0.002",
        "--critic_steps", "2", "--use_ema", "--guidance_anneal_steps", "4", "--lambda_fft", "0.1", *COMMON,
    ]  # fmt: skip
    launch("train_defocusgan.py", args)
    first = read_log(out)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert (out / "checkpoint-2" / "deblur_net" / "diffusion_pytorch_model.safetensors").is_file()
    # --use_ema: the EMA is a Hub folder of safetensors, not accelerate's custom-object pickle
    assert (out / "checkpoint-2" / "deblur_net_ema" / "diffusion_pytorch_model.safetensors").is_file()
    assert not list(out.glob("checkpoint-*/custom_checkpoint_*"))
    ema_at_4 = (out / "checkpoint-4" / "deblur_net_ema" / "diffusion_pytorch_model.safetensors").read_bytes()
    assert (out / "pipeline" / "model_index.json").is_file() and (out / "pipeline" / "README.md").is_file()
    assert list((out / "validation").glob("step-*.png"))

    launch(
        "train_defocusgan.py", [*args, "--resume_from_checkpoint", str(out / "checkpoint-2"), "--save_dtype", "fp16"]
    )
    resumed = read_log(out)
    # --save_dtype fp16: half-size weight files that load as an fp32 model.
    from safetensors import safe_open

    from defocusgan_hf.pipelines import DefocusDeblurPipeline

    with safe_open(out / "pipeline" / "deblur_net" / "diffusion_pytorch_model.safetensors", "pt") as weights:
        assert {weights.get_tensor(k).dtype for k in weights.keys()} == {torch.float16}
    assert DefocusDeblurPipeline.from_pretrained(out / "pipeline").deblur_net.dtype == torch.float32
    # The log is cut back to step 2 on resume (steps 3 and 4 are logged once, by the resumed run)
    steps = [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps.count(3) == 1 and steps.count(4) == 2  # step 4: losses, validation
    assert sorted(resumed) == [1, 2, 3, 4]
    assert (out / "train_log.superseded.jsonl").is_file()
    # the EMA continued from the checkpoint as if never interrupted
    assert (out / "checkpoint-4" / "deblur_net_ema" / "diffusion_pytorch_model.safetensors").read_bytes() == ema_at_4
    for step in (3, 4):
        assert resumed[step]["loss/total"] == pytest.approx(first[step]["loss/total"], rel=1e-5, abs=1e-7)
        assert resumed[step]["critic/wasserstein"] == pytest.approx(
            first[step]["critic/wasserstein"], rel=1e-4, abs=1e-6
        )


def test_time_budget_makes_the_current_step_the_last(tmp_path, valset):
    """--max_train_minutes: once spent, the run stops at that step and still checkpoints, validates and exports it
    (the two-process test above runs the broadcast with a budget that is not spent)."""
    out = tmp_path / "budget"
    launch(
        "train_defocusgan.py",
        ["--output_dir", str(out), "--model_config", TINY_GENERATOR, "--max_train_steps", "50", "--max_train_minutes",
         "1e-6", "--checkpointing_steps", "10", "--validation_dir", str(valset), "--validation_steps", "10",
         "--lambda_perceptual", "0", "--lambda_adv", "0", *COMMON],
    )  # fmt: skip
    assert sorted(read_log(out)) == [1]
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-1"]
    assert (out / "validation" / "step-0000001.png").is_file() and (out / "pipeline" / "model_index.json").is_file()
    from accelerate import Accelerator

    from defocusgan_hf.training.accelerator import TimeBudget

    accelerator = Accelerator(cpu=True)
    assert not TimeBudget(None, accelerator).spent() and not TimeBudget(10, accelerator).spent()
    with pytest.raises(ValueError, match="max_train_minutes"):
        TimeBudget(0, accelerator)


def test_defocusgan_refuses_to_start_over_existing_checkpoints(tmp_path):
    (tmp_path / "checkpoint-5").mkdir()
    result = subprocess.run(
        [sys.executable, str(ROOT / "train" / "train_defocusgan.py"), "--output_dir", str(tmp_path),
         "--lambda_perceptual", "0", "--validation_dir", ""],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0 and "--resume_from_checkpoint latest" in result.stderr


def test_perceptual_loss_without_vgg_weights_stops_with_a_clear_message(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "train" / "train_defocusgan.py"), "--output_dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    assert "--vgg_weights" in result.stderr and "--lambda_perceptual 0" in result.stderr


def test_defocusgan_two_processes_with_accumulation(tmp_path):
    out = tmp_path / "ddp"
    launch(
        "train_defocusgan.py",
        ["--output_dir", str(out), "--model_config", TINY_GENERATOR, "--max_train_steps", "2",
         "--checkpointing_steps", "2",
         "--validation_dir", "", "--lambda_perceptual", "0", "--lambda_adv", "0.002", "--critic_steps", "2",
         "--gradient_accumulation_steps", "2", "--max_train_minutes", "1000", *COMMON],
        processes=2,
    )  # fmt: skip
    assert (out / "checkpoint-2" / "critic" / "config.json").is_file()
    from defocusgan_hf.pipelines import DefocusDeblurPipeline

    pipe = DefocusDeblurPipeline.from_pretrained(out / "pipeline")
    assert pipe.defocus_net is None
    assert sorted(read_log(out)) == [1, 2]


def test_defocus_map_schedule_resume_and_outputs(tmp_path, valset):
    out = tmp_path / "map"
    args = [
        "--output_dir", str(out), "--model_config", TINY_DEFOCUS, "--max_coc", "6", "--max_train_steps", "4",
        "--checkpointing_steps", "2", "--net_only_steps", "1", "--alternate_steps", "1", "--alternate_until_steps", "3",
        "--smoothness_start_step", "1", "--validation_dir", str(valset), "--validation_steps", "2",
        "--learning_rate", "1e-2",
        "--lambda_search", "0.01", "--search_window_sigma", "2", "--use_ema", "--ema_decay", "0.5", *COMMON,
    ]  # fmt: skip
    launch("train_defocus_map.py", args)
    first = read_log(out)
    assert [first[s]["phase_kernel"] for s in (1, 2, 3, 4)] == [0.0, 1.0, 0.0, 0.0]
    assert all(first[s]["loss/search"] >= 0 for s in (1, 2, 3, 4))
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    searched = [row["val/search_abs_mae_px"] for row in rows if "val/search_abs_mae_px" in row]
    assert len(searched) == 2 and all(0 <= value <= 6 for value in searched)
    assert (out / "validation" / "kernels-step-0000002.png").is_file()
    assert (out / "validation" / "kernels-step-0000004.safetensors").is_file()
    from defocusgan_hf.models import DualPixelDefocusNet, LearnableBlurKernel

    net = DualPixelDefocusNet.from_pretrained(out / "defocus_net")
    kernel = LearnableBlurKernel.from_pretrained(out / "blur_kernel")
    assert net.config.max_coc == 6 and kernel().shape[:2] == (2, 7)
    assert not torch.equal(kernel(), LearnableBlurKernel(max_radius=6)())  # the kernel block changed the kernel

    (out / "train_log.jsonl").unlink()
    launch("train_defocus_map.py", [*args, "--resume_from_checkpoint", "latest", "--max_train_steps", "5"])
    assert sorted(read_log(out)) == [5]
    exported = DualPixelDefocusNet.from_pretrained(out / "defocus_net").state_dict()
    raw = DualPixelDefocusNet.from_pretrained(out / "checkpoint-5" / "defocus_net").state_dict()
    assert any(
        not torch.equal(exported[k], raw[k]) for k in raw
    )  # --use_ema: the export is the average, not the last step

    # --init_from continues from the net *and* the kernel it learnt (net-only steps leave the kernel as loaded).
    again = tmp_path / "map-continued"
    launch(
        "train_defocus_map.py",
        ["--output_dir", str(again), "--init_from", str(out), "--max_coc", "6", "--max_train_steps", "1",
         "--net_only_steps", "5", "--validation_dir", "", *COMMON],
    )  # fmt: skip
    continued = LearnableBlurKernel.from_pretrained(again / "blur_kernel")
    torch.testing.assert_close(continued(), LearnableBlurKernel.from_pretrained(out / "blur_kernel")(), rtol=0, atol=0)


def test_defocus_map_two_processes(tmp_path):
    out = tmp_path / "map-ddp"
    launch(
        "train_defocus_map.py",
        ["--output_dir", str(out), "--model_config", TINY_DEFOCUS, "--max_coc", "6", "--max_train_steps", "2",
         "--checkpointing_steps", "2", "--net_only_steps", "1", "--alternate_steps", "1", "--validation_dir", "",
         "--lambda_search", "0.1", "--search_dp_views", *COMMON],
        processes=2,
    )  # fmt: skip
    assert (out / "checkpoint-2" / "blur_kernel" / "config.json").is_file()
    assert all(row["loss/search"] > 0 for row in read_log(out).values())  # the signed search of the DP views ran


def test_defocus_map_validation_searches_once_per_kernel(tmp_path, valset):
    """Stage-1 validation reuses the search MAE while the kernels are unchanged, and its figures equal a direct
    computation (reblur L1 through the shared bank layers, search of each sample)."""
    sys.path.insert(0, str(ROOT / "train"))
    import train_defocus_map as stage1
    from accelerate import Accelerator

    from defocusgan_hf.data import ValidationSet
    from defocusgan_hf.models import DualPixelDefocusNet, LearnableBlurKernel
    from defocusgan_hf.models.reblur import search_coc
    from defocusgan_hf.training.losses import defocus_map_loss

    torch.manual_seed(0)
    net = DualPixelDefocusNet(max_coc=6, **json.loads(TINY_DEFOCUS)).eval()
    kernel = LearnableBlurKernel(max_radius=6)
    samples = [ValidationSet(valset)[i] for i in range(2)]
    args = stage1.parse_args(["--output_dir", str(tmp_path), "--search_window_sigma", "2"])
    accelerator = Accelerator(cpu=True)
    cache = stage1.SearchMAECache()

    first = stage1.log_validation(net, kernel, args, accelerator, 1, samples, cache)
    second = stage1.log_validation(net, kernel, args, accelerator, 2, samples, cache)
    assert cache.searches == 1 and first == second

    kernels = kernel().detach()
    reblur, search = [], []
    for s in samples:
        b = {k: v[None] for k, v in s.items() if isinstance(v, torch.Tensor)}
        with torch.no_grad():
            pred = net(b["left"], b["right"]).defocus_map
        _, parts = defocus_map_loss(b["sharp"], b["blurred"], pred, kernels, smoothness_weight=0.0)
        reblur.append(float(parts["reblur"]))
        search.append(float((search_coc(b["sharp"], b["blurred"], kernels, 2.0) - b["coc"].abs()).abs().mean()))
    assert first["val/reblur_l1"] == pytest.approx(sum(reblur) / 2, rel=1e-5)
    assert first["val/search_abs_mae_px"] == pytest.approx(sum(search) / 2, rel=1e-5)

    assert first["val/coc_mae_px"] >= first["val/coc_abs_mae_px"] and "val/search_mae_px" not in first

    # --search_dp_views: the signed search of the views, whose target also has a signed error.
    dp_args = stage1.parse_args(["--output_dir", str(tmp_path), "--search_window_sigma", "2", "--search_dp_views"])
    dp = stage1.log_validation(net, kernel, dp_args, accelerator, 1, samples)
    assert 0 <= dp["val/search_abs_mae_px"] <= dp["val/search_mae_px"] <= 12

    with torch.no_grad():  # a kernel block changes the kernels (a uniform log-gain would not): the search runs again
        kernel.log_gain.copy_(torch.randn_like(kernel.log_gain))
    third = stage1.log_validation(net, kernel, args, accelerator, 3, samples, cache)
    assert cache.searches == 2 and third["val/search_abs_mae_px"] != first["val/search_abs_mae_px"]
