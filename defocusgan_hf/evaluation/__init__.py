"""Evaluation with the paper's protocol (Tables 1, 3 and 5): :mod:`.datasets` (what is evaluated), :mod:`.methods`
(the rows, a table of specifications), :mod:`.runner` (the loop and its metrics), :mod:`.reports` (tables, chart,
files) and :mod:`.__main__` (``defocusgan-eval`` / ``python -m defocusgan_hf.evaluation``)."""

from .datasets import EvalData, mean_abs_coc_of, open_dataset
from .methods import (
    ABLATION_SPECS,
    ABLATION_VARIANTS,
    BASELINE_SPECS,
    BASELINES,
    DECONV_METHODS,
    KERNEL_SUBFOLDER,
    MAP_SOURCES,
    Method,
    MethodSpec,
    build_methods,
    load_deblur_pipeline,
    load_defocus_net,
    load_kernels,
    reference_map_method,
)
from .reports import LPIPS_UNAVAILABLE, OUTPUT_FILES, check_outputs, format_coc_range_table, format_table, write_outputs
from .runner import EvaluationResult, evaluate_methods, load_lpips, map_only_pipeline, map_reblur_l1

__all__ = [
    "ABLATION_SPECS",
    "ABLATION_VARIANTS",
    "BASELINES",
    "BASELINE_SPECS",
    "DECONV_METHODS",
    "KERNEL_SUBFOLDER",
    "LPIPS_UNAVAILABLE",
    "MAP_SOURCES",
    "OUTPUT_FILES",
    "EvalData",
    "EvaluationResult",
    "Method",
    "MethodSpec",
    "build_methods",
    "check_outputs",
    "evaluate_methods",
    "format_coc_range_table",
    "format_table",
    "load_deblur_pipeline",
    "load_defocus_net",
    "load_kernels",
    "load_lpips",
    "map_only_pipeline",
    "map_reblur_l1",
    "mean_abs_coc_of",
    "open_dataset",
    "reference_map_method",
    "write_outputs",
]
