"""The rows of an evaluation ("methods"): a table of method specifications (data), and the models and kernel banks
each row needs, resolved from the command line's flags.

Rows: the blurred input itself; the model (``--model``); the two-stage baselines ``{wiener,rl}_{true,estimated,
mean}_map`` (a CoC map followed by layered non-blind deconvolution); and, for ``--kernel_ablation`` (Table 5), one
estimated-map row per stage-1 net trained with a fixed Gaussian, a fixed Butterworth or the learnable kernel.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from ..models.blur_kernel import KERNEL_FAMILIES, LearnableBlurKernel, kernel_bank
from ..pipelines.loading import BLUR_KERNEL_SUBFOLDER as KERNEL_SUBFOLDER
from ..pipelines.loading import has_learned_kernel, load_pipeline
from ..pipelines.loading import load_defocus_net as _load_defocus_net
from .datasets import EvalData

DECONV_METHODS = {"wiener": "wiener", "rl": "richardson_lucy"}
DECONV_LABELS = {"wiener": "Wiener", "richardson_lucy": "Richardson–Lucy"}
# mean_map: one constant, the mean |CoC| of the evaluated set's true maps, everywhere (the baseline a stage-1 map
# must beat: issue #4 asks for half its |CoC| error).
MAP_SOURCES = ("true_map", "estimated_map", "mean_map")
MAP_LABELS = {"true_map": "True map", "estimated_map": "Stage-1 map", "mean_map": "Mean |CoC| map (constant)"}
BASELINES = ("input",) + tuple(f"{d}_{m}" for d in DECONV_METHODS for m in MAP_SOURCES)
ABLATION_VARIANTS = ("gaussian", "butterworth", "learnable")


@dataclass(frozen=True)
class MethodSpec:
    """What a row is, before anything is loaded: ``kind`` ``"input"``, ``"model"`` or ``"deconv"``; for ``"deconv"``
    the map it deconvolves (``map_source``) and the deconvolution (``deconv``)."""

    key: str
    label: str
    kind: str
    map_source: str | None = None
    deconv: str = "wiener"


INPUT = MethodSpec("input", "Input (blurred)", "input")
BASELINE_SPECS = {
    "input": INPUT,
    **{
        f"{short}_{source}": MethodSpec(
            f"{short}_{source}", f"{MAP_LABELS[source]} + {DECONV_LABELS[deconv]}", "deconv", source, deconv
        )
        for short, deconv in DECONV_METHODS.items()
        for source in MAP_SOURCES
    },
}
"""``--baselines`` keys -> their rows."""
ABLATION_SPECS = (
    INPUT,
    MethodSpec("wiener_true_map", "True map + Wiener (Butterworth bank)", "deconv", "true_map"),
    BASELINE_SPECS["wiener_mean_map"],
    *(
        MethodSpec(f"ablation_{variant}", f"{variant.capitalize()} kernel: map + Wiener", "deconv", "estimated_map")
        for variant in ABLATION_VARIANTS
    ),
)
"""``--kernel_ablation``'s rows (Table 5), in order; an ``ablation_<variant>`` row only with that variant's net."""


@dataclass
class Method:
    """One row of the table.

    ``kind``: ``"input"``, ``"model"`` (the generator) or ``"deconv"`` (map + deconvolution). For ``"deconv"``,
    ``map_source`` is ``"true_map"``, ``"estimated_map"`` or ``"mean_map"``, ``defocus_net`` the stage-1 net of an
    estimated map, ``kernels`` the bank ``(S, R + 1, K, K)`` and ``deconv`` ``"wiener"`` or ``"richardson_lucy"``.
    """

    key: str
    label: str
    kind: str
    map_source: str | None = None
    defocus_net: Any = None
    kernels: torch.Tensor | None = None
    deconv: str = "wiener"
    pipeline: Any = None
    details: dict = field(default_factory=dict)

    @classmethod
    def from_spec(cls, spec: MethodSpec, **fields: Any) -> Method:
        return cls(spec.key, spec.label, spec.kind, spec.map_source, deconv=spec.deconv, **fields)


# ----------------------------------------------------------------------------------------------------------------
# Models and kernel banks
# ----------------------------------------------------------------------------------------------------------------


def load_deblur_pipeline(source: str, device: str = "cpu", bfloat16: bool = False):
    """A :class:`DefocusDeblurPipeline` from a pipeline folder / Hub id, or from a bare ``DefocusDeblurNet``
    folder (``config.json`` + weights). ``bfloat16``: bf16 autocast, channels-last on a CPU (the CLI's
    ``--dtype bfloat16``)."""
    pipe = load_pipeline(source)
    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to(device)
    if not bfloat16:
        return pipe
    pipe.enable_autocast(torch.bfloat16)
    return pipe.enable_channels_last() if pipe.device.type == "cpu" else pipe


def load_defocus_net(source: str, device: str = "cpu"):
    """A :class:`DualPixelDefocusNet` from its own folder or from a folder holding ``defocus_net/``."""
    return _load_defocus_net(source, device)


def load_kernels(source: str | os.PathLike | None, default_family: str = "butterworth") -> torch.Tensor:
    """Kernel bank ``(S, R + 1, K, K)`` for deconvolution.

    ``source``: ``"butterworth"`` / ``"gaussian"`` (the fixed banks, R = 25); a stage-1 checkpoint folder holding
    ``blur_kernel/`` (a saved :class:`LearnableBlurKernel`, as ``train/train_defocus_map.py`` writes it) or such a
    ``blur_kernel`` folder itself; or a ``.safetensors`` file holding ``kernels`` (a materialised bank, like the
    training script's ``kernels-step-N.safetensors``). ``None``: the fixed bank of ``default_family``.
    """
    if source is None or str(source) in KERNEL_FAMILIES:
        return kernel_bank(family=str(source or default_family))[None]
    path = Path(source)
    if path.is_dir():
        folder = path / KERNEL_SUBFOLDER if (path / KERNEL_SUBFOLDER / "config.json").is_file() else path
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"No learned kernel in '{path}': expected '{KERNEL_SUBFOLDER}/config.json' in it.")
        with torch.no_grad():
            return LearnableBlurKernel.from_pretrained(folder)().float()
    if not path.is_file():
        raise FileNotFoundError(
            f"Kernel source {str(source)!r} is neither 'butterworth', 'gaussian' nor a file or folder."
        )
    with safe_open(str(path), framework="pt") as f:
        if "kernels" not in f.keys():
            raise ValueError(f"'{path}' holds no 'kernels' tensor (S, R+1, K, K); its keys: {sorted(f.keys())}.")
        kernels = f.get_tensor("kernels").float()
    if kernels.dim() == 3:
        kernels = kernels[None]
    if kernels.dim() != 4 or kernels.shape[0] not in (1, 2):
        raise ValueError(f"'{path}': `kernels` must be (R+1, K, K) or (S, R+1, K, K), got {tuple(kernels.shape)}.")
    return kernels


def stage1_kernels(
    checkpoint: str | None, override: str | None, module=None, fallback: str | None = "butterworth"
) -> tuple[torch.Tensor, str]:
    """Kernels for deconvolving a stage-1 map, and where they came from: ``override`` if given, else the kernel
    learned with that map (a pipeline's ``blur_kernel`` component ``module``, or ``checkpoint/blur_kernel/``),
    else the fixed bank of ``fallback`` (None: a ``FileNotFoundError``)."""
    if override:
        return load_kernels(override), str(override)
    if module is not None:
        with torch.no_grad():
            return module().float().cpu(), "the pipeline's blur_kernel"
    if has_learned_kernel(checkpoint):
        return load_kernels(checkpoint), f"kernel saved with {checkpoint}"
    if fallback is None:
        raise FileNotFoundError(f"The learnable-kernel checkpoint '{checkpoint}' has no '{KERNEL_SUBFOLDER}/' folder.")
    return load_kernels(fallback), f"fixed {fallback} bank"


def reference_map_method(key: str, spec: MethodSpec | None = None) -> Method:
    """The row of a map that needs no stage-1 net (``"<deconv>_true_map"`` or ``"<deconv>_mean_map"``), deconvolved
    with the fixed Butterworth bank."""
    spec = spec or BASELINE_SPECS[key]
    return Method.from_spec(spec, kernels=load_kernels("butterworth"), details={"kernels": "fixed butterworth bank"})


# ----------------------------------------------------------------------------------------------------------------
# Rows from the command line
# ----------------------------------------------------------------------------------------------------------------


def parse_pairs(text: str) -> dict[str, str]:
    """``"a=PATH,b=PATH"`` -> ``{"a": "PATH", "b": "PATH"}``."""
    pairs = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in item:
            raise ValueError(f"Expected NAME=PATH items separated by commas, got {item!r} in {text!r}.")
        key, value = item.split("=", 1)
        pairs[key.strip()] = value.strip()
    return pairs


def ablation_methods(args: argparse.Namespace) -> list[Method]:
    """``--kernel_ablation``'s rows: :data:`ABLATION_SPECS`, each stage-1 net with the kernel it was trained with."""
    if not args.defocus_models:
        raise ValueError("--kernel_ablation needs --defocus_models gaussian=PATH,butterworth=PATH,learnable=PATH.")
    variants = parse_pairs(args.defocus_models)
    unknown = sorted(set(variants) - set(ABLATION_VARIANTS))
    if unknown:
        raise ValueError(f"Unknown kernel variant(s) {unknown} in --defocus_models; use {list(ABLATION_VARIANTS)}.")
    methods = []
    for spec in ABLATION_SPECS:
        if spec.map_source in ("true_map", "mean_map"):
            methods.append(reference_map_method(spec.key, spec))
        elif spec.map_source is None:
            methods.append(Method.from_spec(spec))
        elif (variant := spec.key.removeprefix("ablation_")) in variants:
            path = variants[variant]
            fallback = None if variant == "learnable" else variant
            kernels, origin = stage1_kernels(path, args.deconv_kernels, fallback=fallback)
            net = load_defocus_net(path, args.device)
            details = {"defocus_model": path, "kernels": origin}
            methods.append(Method.from_spec(spec, defocus_net=net, kernels=kernels, details=details))
    return methods


def baseline_keys(requested: str, data: EvalData, has_stage1: bool) -> list[str]:
    """``--baselines``: ``"auto"`` (input, plus the true-map and estimated-map Wiener rows where the data and a
    stage-1 net allow), ``"none"`` or comma-separated keys of :data:`BASELINE_SPECS`."""
    requested = requested.strip().lower()
    if requested == "auto":
        auto = {
            "input": True,
            "wiener_true_map": data.has_coc,
            "wiener_estimated_map": has_stage1 and data.has_dp_views,
        }
        return [key for key, wanted in auto.items() if wanted]
    if requested == "none":
        return []
    keys = [k.strip() for k in requested.split(",") if k.strip()]
    for key in keys:
        if key not in BASELINES:
            raise ValueError(f"Unknown baseline {key!r}; choose from {list(BASELINES)} (or 'auto', 'none').")
    return keys


def build_methods(args: argparse.Namespace, data: EvalData) -> list[Method]:
    """The rows asked for by ``--model`` / ``--baselines`` (or ``--kernel_ablation``)."""
    if args.kernel_ablation:
        return ablation_methods(args)
    pipeline = load_deblur_pipeline(args.model, args.device) if args.model else None
    defocus_source, kernel_module = args.defocus_model, None
    defocus_net = load_defocus_net(defocus_source, args.device) if defocus_source else None
    if defocus_net is None and pipeline is not None and getattr(pipeline, "defocus_net", None) is not None:
        defocus_net, defocus_source = pipeline.defocus_net, f"{args.model} (defocus_net)"
        kernel_module = getattr(pipeline, "blur_kernel", None)
    methods: list[Method] = []
    for key in baseline_keys(args.baselines, data, defocus_net is not None):
        spec = BASELINE_SPECS[key]
        if spec.map_source is None:
            methods.append(Method.from_spec(spec))
        elif spec.map_source in ("true_map", "mean_map"):
            if not data.has_coc:
                raise ValueError(f"Baseline {key!r} needs ground-truth CoC maps, which the {data.kind} data lacks.")
            methods.append(reference_map_method(key))
        else:
            if defocus_net is None:
                raise ValueError(
                    f"Baseline {key!r} needs a stage-1 net: pass --defocus_model (or a pipeline with one)."
                )
            if not data.has_dp_views:
                raise ValueError(f"Baseline {key!r} needs dual-pixel views, which the {data.kind} data lacks.")
            kernels, origin = stage1_kernels(args.defocus_model, args.deconv_kernels, kernel_module)
            details = {"defocus_model": defocus_source, "kernels": origin}
            methods.append(Method.from_spec(spec, defocus_net=defocus_net, kernels=kernels, details=details))
    if pipeline is not None:
        label = args.model_label or f"DefocusGAN ({Path(str(args.model)).name or args.model})"
        params = sum(p.numel() for p in pipeline.deblur_net.parameters())
        details = {"model": args.model, "params_millions": round(params / 1e6, 3)}
        methods.append(Method("model", label, "model", pipeline=pipeline, details=details))
        if args.self_ensemble:
            ensemble = {**details, "self_ensemble": True}
            methods.append(
                Method("model_x8", f"{label} + x8 self-ensemble", "model", pipeline=pipeline, details=ensemble)
            )
    if not methods:
        raise ValueError("Nothing to evaluate: pass --model and/or --baselines.")
    return methods
