"""Publishing the Space and the model without a network: the exact file sets, the CPU torch requirement, the
``models:`` front matter, LFS attributes, a staged Space that starts, and the upload calls (a fake HfApi)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from defocusgan_hf.app import publish

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = [
    f"checkpoints/defocusgan-synthetic/{n}/diffusion_pytorch_model.safetensors"
    for n in ("blur_kernel", "deblur_net", "defocus_net")
]


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    folder = tmp_path_factory.mktemp("space")
    return folder, publish.stage_space(folder)


def test_the_space_holds_what_the_app_needs_and_nothing_else(space):
    folder, files = space
    assert {"app.py", "README.md", "LICENSE", ".gitattributes", "requirements.txt", *WEIGHTS} <= set(files)
    needed = {"examples/coffee_defocused.jpg", "examples/chelsea_dp_left.jpg"}
    assert needed | {"defocusgan_hf/pipelines/pipeline_defocus_deblur.py"} <= set(files)
    assert not [f for f in files if f.startswith(("tests/", "train/", "runs/", "data/", "docs/", "benchmarks/", "."))
                and f != ".gitattributes"]  # fmt: skip
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == sorted(files)
    tracked = set(publish.tracked_files())
    assert set(files) <= tracked  # nothing untracked is uploaded


def test_the_space_installs_cpu_torch(space):
    requirements = (space[0] / "requirements.txt").read_text().splitlines()
    assert requirements[0] == "--extra-index-url https://download.pytorch.org/whl/cpu"
    pinned = [line for line in (ROOT / "requirements.txt").read_text().splitlines() if line.startswith("torch==")]
    assert [line for line in requirements if line.startswith("torch")] == [pinned[0] + "+cpu"]
    assert publish.space_requirements("numpy>=2\ntorch == 2.13.0  # pin\n") == (
        "--extra-index-url https://download.pytorch.org/whl/cpu\nnumpy>=2\ntorch==2.13.0+cpu\n"
    )


def test_binaries_are_tracked_by_lfs(space):
    binaries = [f for f in space[1] if f.endswith((".safetensors", ".png", ".jpg"))]
    out = subprocess.run(["git", "check-attr", "filter", "--", *binaries], cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.count(": filter: lfs") == len(binaries) > 3


def test_models_front_matter_only_with_a_hub_id(space):
    readme = (space[0] / "README.md").read_text()
    assert "\nmodels:" not in readme.split("\n---\n")[0]
    with_id = publish.with_model_id(readme, "someone/defocusgan-synthetic")
    head = with_id.split("\n---\n")[0]
    assert "models:\n  - someone/defocusgan-synthetic" in head and "# models:" not in head and "sdk: gradio" in head
    assert with_id.split("\n---\n", 1)[1] == readme.split("\n---\n", 1)[1]


def test_the_staged_space_starts_with_its_own_files(space):
    folder = space[0]
    code = "import app, defocusgan_hf; pipe, source = app.load_pipeline(); print(defocusgan_hf.__file__, source)"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
    env.pop("DEFOCUSGAN_MODEL", None)
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=folder, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    module, source = result.stdout.split()[-2:]
    assert Path(module).is_relative_to(folder) and Path(source) == folder / "checkpoints" / "defocusgan-synthetic"


class FakeApi:
    def __init__(self):
        self.calls = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        files = sorted(
            str(p.relative_to(kwargs["folder_path"])) for p in Path(kwargs["folder_path"]).rglob("*") if p.is_file()
        )
        self.calls.append(("upload_folder", kwargs["repo_id"], {**kwargs, "files": files}))


def test_publish_uploads_exactly_the_staged_files(capsys):
    assert publish.publish("space", "someone/defocusgan", dry_run=True, api=object())  # a dry run calls nothing
    assert "dry run: nothing uploaded" in capsys.readouterr().out
    api = FakeApi()
    files = publish.publish("space", "someone/defocusgan", model_repo="someone/model", api=api)
    (_, _, create), (_, repo, upload) = api.calls
    assert create == {"repo_type": "space", "exist_ok": True, "space_sdk": "gradio"} and repo == "someone/defocusgan"
    assert upload["repo_type"] == "space" and upload["files"] == sorted(files)
    api = FakeApi()
    files = publish.publish("model", "someone/model", api=api)
    assert api.calls[0][2]["repo_type"] == "model" and api.calls[1][2]["files"] == sorted(files)
    assert {"model_index.json", "README.md", "deblur_net/diffusion_pytorch_model.safetensors", ".gitattributes"} <= set(
        files
    )
    assert json.loads((ROOT / "checkpoints/defocusgan-synthetic/model_index.json").read_text())["_class_name"]
