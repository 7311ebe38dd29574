"""The public API stays where users find it, whatever the package's layout: the top-level names, the console
scripts of pyproject.toml, and the ``python -m`` entry points; and no module grows past the layout's size limit."""

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import defocusgan_hf

ROOT = Path(__file__).resolve().parents[1]
PUBLIC_NAMES = {
    "DefocusDeblurNet",
    "DefocusDeblurPipeline",
    "DefocusDeblurPipelineOutput",
    "DualPixelDefocusNet",
    "LearnableBlurKernel",
    "PatchDiscriminator",
    "__version__",
    "reblur",
}
CONSOLE_SCRIPTS = {"defocusgan-deblur", "defocusgan-defocus-map", "defocusgan-eval", "defocusgan-make-valset"}
MODULE_ENTRY_POINTS = [
    ("defocusgan_hf.cli", "deblur"),
    ("defocusgan_hf.cli", "defocus-map"),
    ("defocusgan_hf.evaluation",),
    ("defocusgan_hf.data.validation_set",),
    ("defocusgan_hf.app.publish",),
    ("defocusgan_hf.training.interpolate",),
]
MAX_MODULE_LINES = 450


def test_top_level_names():
    assert set(defocusgan_hf.__all__) == PUBLIC_NAMES
    for name in PUBLIC_NAMES:
        assert getattr(defocusgan_hf, name) is not None
    from defocusgan_hf.pipelines import DefocusDeblurPipeline

    assert DefocusDeblurPipeline is defocusgan_hf.DefocusDeblurPipeline


def test_console_scripts_resolve_to_callables():
    """The installed console scripts (pyproject.toml's ``[project.scripts]``, as pip wrote them)."""
    scripts = {e.name: e for e in entry_points(group="console_scripts") if e.name.startswith("defocusgan-")}
    assert set(scripts) == CONSOLE_SCRIPTS
    for script in scripts.values():
        assert callable(script.load()), script.value


@pytest.mark.parametrize("command", MODULE_ENTRY_POINTS, ids=" ".join)
def test_python_m_entry_points_answer_help(command):
    result = subprocess.run(
        [sys.executable, "-m", *command, "--help"], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage" in result.stdout.lower()


def test_no_module_over_the_size_limit():
    files = [*sorted((ROOT / "defocusgan_hf").rglob("*.py")), ROOT / "app.py"]
    too_long = {str(f.relative_to(ROOT)): n for f in files if (n := len(f.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not too_long, f"modules over {MAX_MODULE_LINES} lines: {too_long}"
