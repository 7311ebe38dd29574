"""Loading trained models, one way for the app, the CLI, evaluation, training and the data preview.

A *source* is a pipeline folder (``model_index.json``), a bare net folder (``config.json`` + weights, as
``save_pretrained`` writes it; for the deblurring net also a folder holding ``deblur_net/``, for the defocus net a
folder holding ``defocus_net/``, i.e. a pipeline or a stage-1 checkpoint), or a Hugging Face Hub repo id (also
found in the local cache with ``HF_HUB_OFFLINE=1``). The model classes are imported inside the functions: diffusers
takes seconds to import, and ``--help`` of the commands stays fast.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

BLUR_KERNEL_SUBFOLDER = "blur_kernel"
WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
"""What ``save_pretrained`` writes for a net (safetensors; ``.bin`` only from old diffusers versions)."""


def looks_like_local_path(source: str) -> bool:
    """A Hub repo id is ``name`` or ``owner/name``; anything else (``./x``, ``/a/b``, ``a/b/c``, ``~``) is a path."""
    return source.startswith((".", "/", "~", "\\")) or source.count("/") > 1 or os.sep in source.replace("/", "")


def _local_or_hub(source: str | os.PathLike) -> tuple[Path | None, str]:
    """``(folder, name)``: the existing local folder (None for a Hub id) and the name to hand to ``from_pretrained``.
    A source that looks like a path but does not exist raises ``OSError`` naming it."""
    text = str(source)
    local = Path(text).expanduser()
    if local.exists():
        return local, str(local)
    if looks_like_local_path(text):
        raise OSError(f"the model folder '{text}' does not exist")
    return None, text


def check_net_folder(folder: Path, component: str | None = None) -> None:
    """Raise ``OSError`` naming the component and the file when a saved net's ``config.json`` or weights are missing
    (diffusers' own message names neither, and first retries with unsafe pickle loading)."""
    what = f"the `{component}` component" if component else "the net"
    if not (folder / "config.json").is_file():
        raise OSError(f"{what} has no config.json: {folder / 'config.json'} does not exist")
    if not any((folder / name).is_file() or any(folder.glob(name.replace(".", ".*.", 1))) for name in WEIGHT_FILES):
        present = ", ".join(sorted(p.name for p in folder.iterdir())) or "nothing"
        raise OSError(
            f"the weights of {what} are missing: {folder / WEIGHT_FILES[0]} does not exist "
            f"(the folder holds {present}); "
            "copy the complete model folder again"
        )


def check_pipeline_folder(folder: Path) -> None:
    """Each component that ``model_index.json`` lists must have its folder, config and weights (see
    :func:`check_net_folder`)."""
    import json

    index = json.loads((folder / "model_index.json").read_text())
    for component, spec in index.items():
        if component.startswith("_") or not isinstance(spec, list) or None in spec:
            continue
        if not (folder / component).is_dir():
            raise OSError(f"the `{component}` component is missing: {folder / component} does not exist")
        check_net_folder(folder / component, component)


def load_pipeline(source: str | os.PathLike, device: Any = None, dtype: Any = None, **kwargs: Any):
    """A :class:`~defocusgan_hf.pipelines.DefocusDeblurPipeline` from a pipeline folder or Hub id, or from a bare
    :class:`~defocusgan_hf.models.DefocusDeblurNet` folder (itself, or one holding ``deblur_net/``), which gives a
    pipeline without ``defocus_net``. ``dtype``: a ``torch.dtype`` for the networks (default float32); ``device``:
    where to move it; other keywords go to ``from_pretrained``. Raises ``OSError`` for a source that cannot be
    loaded."""
    from ..models.deblur_net import DefocusDeblurNet
    from .pipeline_defocus_deblur import DefocusDeblurPipeline

    folder, name = _local_or_hub(source)
    if folder is not None and folder.is_dir() and (folder / "model_index.json").is_file():
        check_pipeline_folder(folder)
    if folder is not None and folder.is_dir() and not (folder / "model_index.json").is_file():
        sub = {"subfolder": "deblur_net"} if (folder / "deblur_net" / "config.json").is_file() else {}
        check_net_folder(folder / sub.get("subfolder", ""), sub.get("subfolder"))
        net = DefocusDeblurNet.from_pretrained(folder, **sub)
        pipeline = DefocusDeblurPipeline(deblur_net=net if dtype is None else net.to(dtype))
    else:
        # diffusers >= 0.36 calls the precision `dtype` (`torch_dtype` is deprecated); float32 is the default anyway.
        options = {} if dtype is None else {"dtype": dtype}
        pipeline = DefocusDeblurPipeline.from_pretrained(name, **options, **kwargs)
    return pipeline if device is None else pipeline.to(device)


def load_defocus_net(source: str | os.PathLike, device: Any = None):
    """A :class:`~defocusgan_hf.models.DualPixelDefocusNet` (in ``eval()``) from its own folder, from a folder holding
    ``defocus_net/`` (a pipeline or a stage-1 checkpoint), or from a Hub id."""
    from ..models.defocus_net import DualPixelDefocusNet

    folder, name = _local_or_hub(source)
    sub = {"subfolder": "defocus_net"} if folder is not None and (folder / "defocus_net").is_dir() else {}
    if folder is not None and folder.is_dir():
        check_net_folder(folder / sub.get("subfolder", ""), sub.get("subfolder"))
    net = DualPixelDefocusNet.from_pretrained(name, **sub).eval()
    return net if device is None else net.to(device)


def load_blur_kernel(folder: str | os.PathLike | None):
    """The stage-1 kernel saved beside its net (``<folder>/blur_kernel``), or None when there is none."""
    from ..models.blur_kernel import LearnableBlurKernel

    path = Path(folder) / BLUR_KERNEL_SUBFOLDER if folder is not None else None
    return LearnableBlurKernel.from_pretrained(path) if path is not None and path.is_dir() else None


def has_learned_kernel(folder: str | os.PathLike | None) -> bool:
    """Whether ``folder`` is a stage-1 checkpoint with a saved kernel (``blur_kernel/config.json``)."""
    return folder is not None and (Path(folder) / BLUR_KERNEL_SUBFOLDER / "config.json").is_file()
