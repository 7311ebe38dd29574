"""Evaluate deblurring models and the two-stage baselines with the paper's protocol (Tables 1, 3 and 5).

    python -m defocusgan_hf.evaluation --dataset synthetic --root data/synthetic_val --model runs/defocusgan/pipeline \\
        --protocol seed --output_dir eval/synthetic_seed
    defocusgan-eval --dataset dpdd --root /data/dd_dp_dataset_canon --model PATH --protocol peer \\
        --lpips_weights lpips_alex.safetensors --output_dir eval/dpdd_peer
    defocusgan-eval --dataset folder --root PAIRS --model PATH --output_dir eval/pairs   # PAIRS/{blurred,sharp}/
    defocusgan-eval --kernel_ablation --root data/synthetic_val --output_dir eval/table5 \\
        --defocus_models gaussian=runs/s1_gauss,butterworth=runs/s1_bw,learnable=runs/s1_learn

Rows ("methods"): the blurred input itself; the model (``--model``, a pipeline folder or Hub id); and the
two-stage baselines ``{wiener,rl}_{true,estimated}_map``: the CoC map (the ground-truth one of synthetic data,
or the stage-1 net's estimate from the DP views) followed by layered non-blind deconvolution
(:mod:`defocusgan_hf.evaluation.deconvolution`). Columns: PSNR, SSIM, MAE, LPIPS (see
:mod:`defocusgan_hf.evaluation.metrics` for
the protocols), for estimated maps with ground truth the CoC error in pixels, and for every map the stage-1
objective itself (Eq. 2's reblur L1: how well that map, reblurring the sharp image with its row's kernels, explains
the blurred one; measurable on DPDD too, where no true map exists). On DPDD the 76 test scenes
are split into indoor (37) and outdoor (39) as in Table 1.

``--kernel_ablation`` is Table 5 on synthetic data: maps from stage-1 nets trained with a fixed Gaussian, a fixed
Butterworth and the learnable kernel, each followed by the same layered Wiener deconvolution (with the kernel
bank that net was trained with: its map's radii are measured in that kernel's units).

Outputs in ``--output_dir``: ``results.md`` (the table printed), ``results.json`` (protocol, settings, command,
means per method and group), ``per_image.csv`` and, on data with true CoC maps, ``psnr_by_coc_range.png`` (PSNR
by true |CoC| range, also in the two first files). Existing files are never replaced without ``--overwrite``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import torch

from .. import __version__
from .datasets import open_dataset
from .deconvolution import DEFAULT_RL_ITERATIONS, DEFAULT_WIENER_BALANCE
from .methods import BASELINES, build_methods
from .metrics import DEFAULT_COC_EDGES, get_protocol, parse_coc_edges
from .real_report import add_real_args, run_real_evaluation
from .reports import check_outputs, format_coc_range_table, format_table, write_outputs
from .runner import evaluate_methods, load_lpips


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="defocusgan-eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add(
        "--dataset",
        choices=["synthetic", "dpdd", "folder", "real", "battery"],
        default="synthetic",
        help="What to evaluate on; 'real': real captures (scene folders or photos with blur masks, "
        "defocusgan_hf/evaluation/real_report.py); 'battery': the do-no-harm battery of in-focus content "
        "(defocusgan_hf/evaluation/battery.py; --root is not read).",
    )
    add(
        "--root",
        default="data/synthetic_val",
        help="Validation-set folder (synthetic), DPDD root (dd_dp_dataset_canon or its parent), a folder with "
        "blurred/ and sharp/ (folder), or real captures: scene folders of blurred.png + sharp.png, or images/ + "
        "blur_masks/ (real).",
    )
    add("--model", default=None, help="Pipeline folder or Hub id (or a DefocusDeblurNet folder) to evaluate.")
    add("--model_label", default=None, help="Row label of --model (default: 'DefocusGAN (<folder name>)').")
    add(
        "--self_ensemble",
        action="store_true",
        help="Add a row for --model with the x8 geometric self-ensemble (flips and quarter turns averaged; "
        "8x the time).",
    )
    add(
        "--bfloat16_row",
        action="store_true",
        help="Real data and battery: add a row for --model under bf16 autocast in channels-last memory, as "
        "`defocusgan-deblur --dtype bfloat16` runs it on a CPU (the same tiles, the same run).",
    )
    add(
        "--defocus_model",
        default=None,
        help="Stage-1 checkpoint (DualPixelDefocusNet folder, or a folder with defocus_net/) for *_estimated_map; "
        "default: the --model pipeline's defocus_net when it has one.",
    )
    add(
        "--deconv_kernels",
        default=None,
        help="Kernels for deconvolving estimated maps: butterworth, gaussian, a stage-1 folder (with blur_kernel/) "
        "or a .safetensors file with a 'kernels' tensor (default: the kernel learned with the stage-1 net - the "
        "pipeline's blur_kernel or the checkpoint's blur_kernel/ - else butterworth). True maps use the fixed "
        "Butterworth bank.",
    )
    add(
        "--protocol",
        choices=["seed", "peer"],
        default="seed",
        help="seed: 16-bit floats, LPIPS-SqueezeNet; peer: 8-bit, LPIPS-AlexNet (see defocusgan_hf/metrics.py).",
    )
    add(
        "--baselines",
        default="auto",
        help=f"Comma-separated rows besides --model, from {', '.join(BASELINES)}; 'auto' = input, plus the "
        "true-map and estimated-map Wiener rows where the data and a stage-1 net allow; 'none' for no baseline.",
    )
    add(
        "--lpips_weights",
        default=None,
        help="LPIPS weights for the protocol's backbone: .safetensors file(s), comma-separated (lpips-package or "
        "torchvision layout), or org/repo:file.safetensors. Without them LPIPS is reported as unavailable.",
    )
    add("--wiener_balance", type=float, default=DEFAULT_WIENER_BALANCE, help="Wiener regularisation weight.")
    add("--rl_iterations", type=int, default=DEFAULT_RL_ITERATIONS, help="Richardson–Lucy iterations.")
    add("--kernel_ablation", action="store_true", help="Table 5 on the synthetic set (needs --defocus_models).")
    add(
        "--defocus_models",
        default=None,
        help="Kernel ablation: gaussian=PATH,butterworth=PATH,learnable=PATH (stage-1 checkpoints per kernel).",
    )
    add(
        "--coc_ranges",
        default=",".join(f"{e:g}" for e in DEFAULT_COC_EDGES),
        help="Lower edges (px) of the true-|CoC| ranges of the PSNR-by-defocus table (data with true maps); "
        "'none' to leave it out.",
    )
    add("--tile_size", type=int, default=0, help="Tile side for the nets (0 = whole images, the paper's protocol).")
    add("--tile_overlap", type=int, default=64, help="Tile overlap in pixels.")
    add("--battery_seed", type=int, default=0, help="--dataset battery: the seed of its procedural images.")
    add("--max_images", type=int, default=None, help="Evaluate only the first N images (quick checks).")
    add("--device", default="cpu", help="Torch device for the nets and LPIPS.")
    add("--num_threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice).")
    add("--output_dir", required=True, help="Folder for results.md, results.json and per_image.csv.")
    add("--overwrite", action="store_true", help="Replace existing output files.")
    add("--no_progress", action="store_true", help="No progress bar.")
    add_real_args(parser)
    return parser.parse_args(argv)


def _wants_dp_views(args: argparse.Namespace) -> bool:
    """Whether DP views must be loaded (DPDD only loads them when an estimated map is asked for or possible)."""
    if args.kernel_ablation or "estimated" in args.baselines:
        return True
    has_stage1 = args.defocus_model is not None or (
        args.model is not None and (Path(args.model) / "defocus_net").is_dir()
    )
    return args.baselines.strip().lower() == "auto" and has_stage1


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    if args.dataset in ("real", "battery"):
        return _real_main(args, argv)
    try:
        check_outputs(args.output_dir, args.overwrite)
        protocol = get_protocol(args.protocol)
        coc_edges = None if args.coc_ranges.strip().lower() == "none" else parse_coc_edges(args.coc_ranges)
        if args.kernel_ablation and args.dataset != "synthetic":
            raise ValueError("--kernel_ablation runs on the synthetic validation set (--dataset synthetic).")
        lpips = load_lpips(args.lpips_weights.split(",") if args.lpips_weights else None, protocol, args.device)
        data = open_dataset(args.dataset, args.root, need_dp_views=_wants_dp_views(args), max_images=args.max_images)
        methods = build_methods(args, data)
        result = evaluate_methods(
            data,
            methods,
            protocol,
            lpips,
            tile_size=args.tile_size or None,
            tile_overlap=args.tile_overlap,
            device=args.device,
            balance=args.wiener_balance,
            num_iter=args.rl_iterations,
            progress=not args.no_progress,
            coc_edges=coc_edges,
        )
    except (ValueError, OSError) as error:  # bad flags, missing/unreadable data or weights (incl. FileExistsError)
        print(f"defocusgan-eval: error: {error}", file=sys.stderr)
        return 2
    title = (
        f"### {'Kernel ablation (Table 5)' if args.kernel_ablation else 'Deblurring'} on {args.dataset} ({args.root})"
    )
    table = format_table(result, title) + format_coc_range_table(result)
    print(table)
    info = {
        "command": "python -m defocusgan_hf.evaluation " + shlex.join(sys.argv[1:] if argv is None else list(argv)),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "dataset": {"kind": args.dataset, "root": str(args.root)},
        "package_version": __version__,
        "torch_version": torch.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "kernel_ablation": bool(args.kernel_ablation),
    }
    written = write_outputs(result, args.output_dir, table, info, overwrite=args.overwrite)
    print("Wrote " + ", ".join(str(p) for p in written))
    return 0


def _real_main(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    info = {
        "command": "python -m defocusgan_hf.evaluation " + shlex.join(sys.argv[1:] if argv is None else list(argv)),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "dataset": {"kind": "real", "root": str(args.root)},
        "package_version": __version__,
        "torch_version": torch.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
    }
    try:
        if args.dataset == "battery":
            from .battery import run_battery_evaluation

            info["dataset"] = {"kind": "battery", "seed": args.battery_seed}
            written = run_battery_evaluation(args, info)
        else:
            written = run_real_evaluation(args, info)
    except (ValueError, OSError) as error:
        print(f"defocusgan-eval: error: {error}", file=sys.stderr)
        return 2
    print("Wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
