"""Publishing to the Hugging Face Hub: the Space (the app) and the model, as clean uploads of exactly the files each
needs, with ``huggingface_hub.upload_folder`` (binaries go through LFS/Xet by the ``.gitattributes`` it carries).

``git push`` of this repository to a Space is refused: its history holds binaries as plain git objects (a 13 MB
safetensors blob among them), which the Hub does not accept, and history is not rewritten. So the files are staged
into a temporary folder and uploaded as one commit instead::

    python -m defocusgan_hf.app.publish space USER/defocusgan --dry_run     # list what would be uploaded, nothing sent
    python -m defocusgan_hf.app.publish space USER/defocusgan               # create (if needed) and upload the Space
    python -m defocusgan_hf.app.publish model USER/defocusgan-synthetic     # the shipped pipeline as a model repo
    python -m defocusgan_hf.app.publish space USER/defocusgan --model_repo USER/defocusgan-synthetic

The Space gets the files that ``git ls-files`` tracks among :data:`SPACE_PATTERNS` (so nothing untracked, no
tests, training runs or data), a ``requirements.txt`` that installs PyTorch's CPU build from its wheel index (a
Space has no GPU; plain ``torch==X`` from PyPI is the CUDA build with ≈3 GB of ``nvidia-*`` wheels) and, with
``--model_repo``, ``models: [<id>]`` in the README's front matter (which links the Space and the model on the Hub).
Log in first (``hf auth login`` or ``$HF_TOKEN``).
"""

from __future__ import annotations

import argparse
import fnmatch
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODEL_DIR = "checkpoints/defocusgan-synthetic"
SPACE_PATTERNS = (
    "app.py",
    "README.md",
    "LICENSE",
    ".gitattributes",
    "requirements.txt",
    "defocusgan_hf/*.py",
    "defocusgan_hf/*/*.py",
    "examples/*.jpg",
    "examples/*.png",
    "examples/README.md",
    f"{MODEL_DIR}/model_index.json",
    f"{MODEL_DIR}/README.md",
    f"{MODEL_DIR}/*/config.json",
    f"{MODEL_DIR}/*/diffusion_pytorch_model.safetensors",
)
"""What the Space needs to run ``app.py`` with the shipped model (matched against ``git ls-files``)."""
MODEL_PATTERNS = (
    "model_index.json",
    "README.md",
    "*/config.json",
    "*/diffusion_pytorch_model.safetensors",
    "training/*",
)
"""What the model repo holds (relative to the pipeline folder): the pipeline, its card and the training logs."""
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def tracked_files(root: Path = ROOT) -> list[str]:
    """Paths git tracks under ``root`` (relative, POSIX)."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True)
    return sorted(p for p in listed.stdout.decode().split("\0") if p and (root / p).is_file())


def select(files: Sequence[str], patterns: Sequence[str]) -> list[str]:
    """``files`` matching one of ``patterns`` (``fnmatch``, where ``*`` stays within one folder level)."""
    return [f for f in files if any(fnmatch.fnmatch(f, p) and f.count("/") == p.count("/") for p in patterns)]


def space_requirements(text: str) -> str:
    """``requirements.txt`` for a CPU Space: PyTorch's CPU wheel index added and ``torch==X`` pinned to ``X+cpu``."""
    lines = [f"--extra-index-url {TORCH_CPU_INDEX}"]
    for line in text.splitlines():
        match = re.fullmatch(r"\s*torch\s*==\s*([0-9][^\s+;#]*)\s*(#.*)?", line)
        lines.append(f"torch=={match.group(1)}+cpu" if match else line)
    return "\n".join(lines) + "\n"


def with_model_id(readme: str, model_repo: str | None) -> str:
    """The README with ``models: [<model_repo>]`` in its front matter (replacing the placeholder comment)."""
    if model_repo is None:
        return readme
    if not readme.startswith("---\n") or "\n---\n" not in readme[4:]:
        raise ValueError("README.md has no YAML front matter (--- ... ---) to add `models:` to")
    head, body = readme[4:].split("\n---\n", 1)
    head = "\n".join(line for line in head.splitlines() if not line.startswith(("models:", "# models:")))
    return f"---\n{head}\nmodels:\n  - {model_repo}\n---\n{body}"


def stage_space(target: Path, model_repo: str | None = None, root: Path = ROOT) -> list[str]:
    """Copy the Space's files into ``target`` (requirements and README adapted); returns their paths."""
    files = select(tracked_files(root), SPACE_PATTERNS)
    missing = [name for name in ("app.py", "README.md", "LICENSE", ".gitattributes") if name not in files]
    if missing:
        raise FileNotFoundError(f"{missing} are not tracked by git in {root}; commit them before publishing")
    for name in files:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, target / name)
    (target / "requirements.txt").write_text(space_requirements((root / "requirements.txt").read_text()))
    (target / "README.md").write_text(with_model_id((root / "README.md").read_text(), model_repo))
    return files


def stage_model(target: Path, root: Path = ROOT) -> list[str]:
    """Copy the shipped pipeline's files (see :data:`MODEL_PATTERNS`) into ``target``; returns their paths."""
    prefix = f"{MODEL_DIR}/"
    files = [f[len(prefix) :] for f in tracked_files(root) if f.startswith(prefix)]
    files = select(files, MODEL_PATTERNS)
    for name in files:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / prefix / name, target / name)
    shutil.copy2(root / ".gitattributes", target / ".gitattributes")
    return [*files, ".gitattributes"]


def publish(kind: str, repo_id: str, model_repo: str | None = None, dry_run: bool = False, api=None) -> list[str]:
    """Stage the Space or the model and upload it as one commit (``dry_run``: print the list, upload nothing)."""
    with tempfile.TemporaryDirectory(prefix=f"defocusgan-{kind}-") as folder:
        staged = Path(folder)
        files = stage_space(staged, model_repo) if kind == "space" else stage_model(staged)
        total = sum((staged / f).stat().st_size for f in files)
        for name in files:
            print(f"{(staged / name).stat().st_size:>12,}  {name}")
        print(
            f"{len(files)} files, {total / 1e6:.1f} MB -> {kind} {repo_id}"
            f"{' (dry run: nothing uploaded)' if dry_run else ''}"
        )
        if dry_run:
            return files
        if api is None:
            from huggingface_hub import HfApi

            api = HfApi()
        repo_type = "space" if kind == "space" else "model"
        api.create_repo(
            repo_id, repo_type=repo_type, exist_ok=True, **({"space_sdk": "gradio"} if kind == "space" else {})
        )
        api.upload_folder(
            repo_id=repo_id,
            folder_path=staged,
            repo_type=repo_type,
            commit_message=f"Upload the DefocusGAN {kind} (defocusgan_hf.app.publish)",
        )
        return files


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=["space", "model"], help="What to publish: the app as a Space, or the model.")
    parser.add_argument("repo_id", help="The Hub repo to create or update, USER/NAME.")
    parser.add_argument("--model_repo", help="Space only: the model's Hub id, written to the README's `models:`.")
    parser.add_argument("--dry_run", action="store_true", help="List the files that would be uploaded; upload nothing.")
    args = parser.parse_args(argv)
    publish(args.kind, args.repo_id, args.model_repo, args.dry_run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
