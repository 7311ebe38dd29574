"""benchmarks/bench_train_throughput.py --quick and bench_render_banks.py run and report every figure, positive and
finite."""

import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_generator_formats  # noqa: E402
import bench_render_banks  # noqa: E402
import bench_train_throughput  # noqa: E402


def test_quick_run_reports_every_figure(tmp_path):
    output = tmp_path / "train.json"
    argv = ["--quick", "--devices", "cpu", "--resolution", "32", "--repeats", "1", "--no_progress"]
    bench_train_throughput.main([*argv, "--threads", "1", "--output", str(output)])
    results = json.loads(output.read_text())["results"]
    figures = dict(bench_train_throughput.leaves(results))
    for preset in ("default", "varied"):
        for name in ("images_per_s", "cached_images_per_s", "ratio_cached_over_drawn"):
            assert f"sources.{preset}.{name}" in figures
        for name in ("old_images_per_s", "new_images_per_s", "ratio_new_over_old"):
            assert f"render.cpu.{preset}.{name}" in figures
            for precision in ("fp32", "bf16"):
                assert f"together.cpu.{preset}.{precision}.{name}" in figures
    for precision in ("fp32", "bf16"):
        for critic in ("with", "without"):
            assert f"step.cpu.{precision}.{critic}_critic_images_per_s" in figures
    assert all(math.isfinite(v) and v > 0 for v in figures.values()), figures


def test_render_banks_reports_every_path(tmp_path):
    output = tmp_path / "banks.json"
    bench_render_banks.main(["--resolution", "32", "--repeats", "1", "--warmup", "0", "--output", str(output)])
    results = json.loads(output.read_text())["results"]
    assert set(results) == {"varied", "varied, every sample field-varying"}
    for entry in results.values():
        assert set(entry["mean_ms_per_batch"]) == {"per_sublayer", "planned", "shared"}
        figures = [*entry["mean_ms_per_batch"].values(), entry["shared_speedup_over_planned"]]
        assert all(math.isfinite(v) and v > 0 for v in figures), entry


def test_generator_formats_times_both_nets_in_every_variant():
    best = bench_generator_formats.main(["--threads", "1", "--size", "32", "--rounds", "1"])
    assert set(best) == set(bench_generator_formats.VARIANTS)
    for seconds in best.values():
        assert set(seconds) == {"generator", "plain_unet"}
        assert all(math.isfinite(v) and v > 0 for v in seconds.values()), seconds
