"""The do-no-harm battery: in-focus content that a deblurring model must leave alone, procedural and seeded.

Categories (:data:`CATEGORIES`): in-focus bright discs and lamps on dark or flat backgrounds, point lights, text,
fine stripes and checkerboards, smooth gradients and flat areas, noisy flat areas, grey content (R = G = B) and
crops of sharp photographs (scikit-image's bundled ``astronaut`` and ``camera``, in focus across the frame). Every
image is given at 8 bits (``round(x * 255) / 255``) and at 16 bits (``/ 65535``). Generation is a pure function of
the seed (numpy's ``default_rng``; PIL's built-in bitmap font), bit-identical run to run.

Per category, for a restore function ``(H, W, 3) float32 in [0, 1] -> the same``: PSNR(output, input) (the
project's :func:`~defocusgan_hf.evaluation.metrics.psnr`, capped at :data:`PSNR_CAP` dB when nothing changed), its
mean and worst over the category's images; the **brightness shift** ``mean(output - input) * 255`` in 8-bit levels
(mean and the worst by magnitude, with its sign); for grey images the output's channel spread (8-bit levels).

    defocusgan-eval --dataset battery --model checkpoints/defocusgan-synthetic --output_dir eval/battery
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .metrics import psnr

SIZE = 160
"""Side of every battery image in px."""
PSNR_CAP = 100.0
"""PSNR reported when the output equals the input (instead of infinity), dB."""
CATEGORIES = (
    "bright_discs",
    "point_lights",
    "text",
    "stripes_checker",
    "gradients_flat",
    "noisy_flat",
    "grey",
    "photo_crops",
)
Restore = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class BatteryImage:
    """One battery image: ``image`` ``(SIZE, SIZE, 3)`` float32 in [0, 1], quantised to ``bits``."""

    category: str
    name: str
    image: np.ndarray
    bits: int


def _grid() -> tuple[np.ndarray, np.ndarray]:
    return np.mgrid[0:SIZE, 0:SIZE].astype(np.float64) + 0.5


def _discs(rng: np.random.Generator, lamps: bool) -> np.ndarray:
    """Bright discs (a moon, balls) or lamp shapes (tubes, panels) with 1-px antialiased edges on a dark or flat
    background; some saturate at 1."""
    y, x = _grid()
    background = rng.uniform(0.02, 0.25) if rng.random() < 0.7 else rng.uniform(0.35, 0.6)
    image = np.full((SIZE, SIZE, 3), background) * rng.uniform(0.8, 1.0, 3)
    for _ in range(rng.integers(2, 5)):
        cy, cx = rng.uniform(20, SIZE - 20, 2)
        colour = rng.uniform(0.85, 1.0, 3) if rng.random() < 0.6 else np.ones(3)
        if lamps:  # a rounded rectangle: the distance to a segment
            half, radius = rng.uniform(8, 30), rng.uniform(3, 8)
            dx = np.maximum(np.abs(x - cx) - half, 0)
            distance = np.hypot(dx, y - cy)
        else:
            radius = rng.uniform(5, 22)
            distance = np.hypot(x - cx, y - cy)
        cover = np.clip(radius - distance + 0.5, 0, 1)[..., None]
        image = image * (1 - cover) + colour * cover
    return image


def _point_lights(rng: np.random.Generator) -> np.ndarray:
    y, x = _grid()
    image = np.full((SIZE, SIZE, 3), rng.uniform(0.0, 0.12))
    for _ in range(40):
        cy, cx = rng.uniform(4, SIZE - 4, 2)
        cover = np.clip(rng.uniform(0.6, 2.0) - np.hypot(x - cx, y - cy) + 0.5, 0, 1)[..., None]
        image = image * (1 - cover) + rng.uniform(0.8, 1.0, 3) * cover
    return image


def _text(rng: np.random.Generator, dark_on_light: bool) -> np.ndarray:
    ink, paper = (20, 235) if dark_on_light else (235, 20)
    canvas = Image.new("L", (SIZE, SIZE), paper)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()  # PIL's built-in bitmap font: the same pixels on every platform
    words = ["defocus", "DEBLUR", "sharp 0123", "in focus", "Pixel", "lamp moon"]
    for row in range(14):
        text = " ".join(rng.choice(words, 2))
        draw.text((2 + int(rng.integers(0, 20)), 2 + row * 11), text, fill=ink, font=font)
    array = np.asarray(canvas, np.float64) / 255
    return np.repeat(array[..., None], 3, axis=2)


def _stripes(rng: np.random.Generator, checker: bool) -> np.ndarray:
    y, x = _grid()
    if checker:
        period = int(rng.choice([2, 4, 8]))
        pattern = ((x // period + y // period) % 2).astype(np.float64)
    else:
        period, angle = rng.uniform(2.5, 8), rng.uniform(0, np.pi)
        pattern = 0.5 + 0.5 * np.sin(2 * np.pi * (x * np.cos(angle) + y * np.sin(angle)) / period)
    low, high = rng.uniform(0.1, 0.3), rng.uniform(0.7, 0.9)
    return np.repeat((low + (high - low) * pattern)[..., None], 3, axis=2) * rng.uniform(0.85, 1.0, 3)


def _gradient(rng: np.random.Generator, flat: bool) -> np.ndarray:
    y, x = _grid()
    if flat:
        return np.broadcast_to(rng.uniform(0.1, 0.9, 3), (SIZE, SIZE, 3)).copy()
    start, end = rng.uniform(0.05, 0.95, 3), rng.uniform(0.05, 0.95, 3)
    if rng.random() < 0.5:
        t = (x / SIZE)[..., None]
    else:
        t = np.clip(np.hypot(x - SIZE / 2, y - SIZE / 2) / (SIZE / 1.4), 0, 1)[..., None]
    return start + (end - start) * t


def _noisy_flat(rng: np.random.Generator) -> np.ndarray:
    base = rng.uniform(0.2, 0.8, 3)
    return np.clip(base + rng.normal(0, rng.uniform(0.01, 0.04), (SIZE, SIZE, 3)), 0, 1)


def _photo(name: str, rng: np.random.Generator) -> np.ndarray:
    from skimage import data

    photo = getattr(data, name)()
    photo = np.repeat(photo[..., None], 3, axis=2) if photo.ndim == 2 else photo[..., :3]
    top, left = (int(rng.integers(0, s - SIZE)) for s in photo.shape[:2])
    return photo[top : top + SIZE, left : left + SIZE].astype(np.float64) / 255


def _grey(image: np.ndarray) -> np.ndarray:
    return np.repeat(image.mean(axis=2, keepdims=True), 3, axis=2)


def _quantise(image: np.ndarray, bits: int) -> np.ndarray:
    levels = 2**bits - 1
    return (np.round(np.clip(image, 0, 1) * levels) / levels).astype(np.float32)


def battery_images(seed: int = 0) -> list[BatteryImage]:
    """Every battery image, two per category, each at 8 and at 16 bits (so 32), bit-identical for one seed."""
    rng = np.random.default_rng(seed)
    made = {
        "bright_discs": [("discs", _discs(rng, lamps=False)), ("lamps", _discs(rng, lamps=True))],
        "point_lights": [("stars_a", _point_lights(rng)), ("stars_b", _point_lights(rng))],
        "text": [("dark_on_light", _text(rng, True)), ("light_on_dark", _text(rng, False))],
        "stripes_checker": [("stripes", _stripes(rng, False)), ("checker", _stripes(rng, True))],
        "gradients_flat": [("gradient", _gradient(rng, False)), ("flat", _gradient(rng, True))],
        "noisy_flat": [("noise_a", _noisy_flat(rng)), ("noise_b", _noisy_flat(rng))],
        "grey": [("grey_photo", _grey(_photo("astronaut", rng))), ("grey_gradient", _grey(_gradient(rng, False)))],
        "photo_crops": [("astronaut", _photo("astronaut", rng)), ("camera", _photo("camera", rng))],
    }
    return [
        BatteryImage(category, f"{name}_{bits}bit", _quantise(image, bits), bits)
        for category in CATEGORIES
        for name, image in made[category]
        for bits in (8, 16)
    ]


def _psnr(output: np.ndarray, reference: np.ndarray) -> float:
    return PSNR_CAP if np.array_equal(output, reference) else min(PSNR_CAP, psnr(output, reference))


def measure_image(output: np.ndarray, item: BatteryImage) -> dict:
    """PSNR(output, input) dB, brightness shift (8-bit levels) and, for grey input, the output's channel spread."""
    row = {
        "category": item.category,
        "name": item.name,
        "psnr": _psnr(output, item.image),
        "shift": float((output.astype(np.float64) - item.image).mean() * 255),
    }
    if item.category == "grey":
        row["grey_spread"] = float((output.max(axis=2) - output.min(axis=2)).max() * 255)
    return row


def summarise(rows: Sequence[dict]) -> dict:
    """Per category: ``psnr_mean``, ``psnr_min``, ``shift_mean``, ``shift_worst`` (largest magnitude, signed), and
    ``grey_spread_max`` where measured; plus ``worst_category`` (lowest mean PSNR) under the key ``overall``."""
    categories = {}
    for category in dict.fromkeys(r["category"] for r in rows):
        mine = [r for r in rows if r["category"] == category]
        shifts = [r["shift"] for r in mine]
        summary = {
            "images": len(mine),
            "psnr_mean": float(np.mean([r["psnr"] for r in mine])),
            "psnr_min": float(min(r["psnr"] for r in mine)),
            "shift_mean": float(np.mean(shifts)),
            "shift_worst": float(max(shifts, key=abs)),
        }
        if any("grey_spread" in r for r in mine):
            summary["grey_spread_max"] = float(max(r.get("grey_spread", 0.0) for r in mine))
        categories[category] = summary
    worst = min(categories, key=lambda c: categories[c]["psnr_mean"])
    return {"categories": categories, "overall": {"worst_category": worst, **categories[worst]}}


def evaluate_battery(restore: Restore, images: Sequence[BatteryImage]) -> tuple[list[dict], list[np.ndarray]]:
    """Rows of :func:`measure_image` for every image, and the outputs."""
    rows, outputs = [], []
    for item in images:
        output = np.asarray(restore(item.image), np.float32)
        if output.shape != item.image.shape:
            raise ValueError(f"{item.name}: the restore function returned {output.shape}, not {item.image.shape}.")
        rows.append(measure_image(output, item))
        outputs.append(output)
    return rows, outputs


def format_battery_table(summaries: dict[str, dict], seed: int) -> str:
    """Markdown: one row per category and method (PSNR mean / worst, brightness shift mean / worst)."""
    lines = [
        f"### Do-no-harm battery (seed {seed}; {len(CATEGORIES)} categories, 2 images each at 8 and 16 bits, "
        f"{SIZE}² px)",
        "",
        f"PSNR(output, input) in dB (capped at {PSNR_CAP:.0f} when nothing changed); brightness shift = "
        "mean(output − input) in 8-bit levels; grey spread = the output's max_c − min_c on grey input, 8-bit levels.",
        "",
        "| Method | Category | PSNR mean / worst (dB) | Shift mean / worst (levels) | Grey spread |",
        "|---|---|---|---|---|",
    ]
    for method, summary in summaries.items():
        for category, s in summary["categories"].items():
            spread = f"{s['grey_spread_max']:.1f}" if "grey_spread_max" in s else "–"
            lines.append(
                f"| {method} | {category} | {s['psnr_mean']:.2f} / {s['psnr_min']:.2f} | "
                f"{s['shift_mean']:+.2f} / {s['shift_worst']:+.2f} | {spread} |"
            )
        worst = summary["overall"]
        lines.append(f"| {method} | **worst: {worst['worst_category']}** | {worst['psnr_mean']:.2f} | | |")
    return "\n".join(lines) + "\n"


def battery_contact_sheet(images: Sequence[BatteryImage], outputs: dict[str, list[np.ndarray]], path: Path) -> None:
    """One row per category (its first 8-bit image): input, then each method's output and ``|output - input|``
    amplified 10x; every column shows the same image."""
    firsts = {}
    for index, item in enumerate(images):
        if item.bits == 8:
            firsts.setdefault(item.category, index)
    firsts = list(firsts.values())
    columns = 1 + 2 * len(outputs)
    sheet = Image.new("RGB", (columns * (SIZE + 4), len(firsts) * (SIZE + 4)), "white")
    for row, index in enumerate(firsts):
        tiles = [images[index].image]
        for method_outputs in outputs.values():
            output = method_outputs[index]
            tiles += [output, np.clip(np.abs(output - images[index].image) * 10, 0, 1)]
        for column, tile in enumerate(tiles):
            pil = Image.fromarray((np.clip(tile, 0, 1) * 255 + 0.5).astype(np.uint8))
            sheet.paste(pil, (column * (SIZE + 4), row * (SIZE + 4)))
    sheet.save(path)


def write_battery_outputs(output_dir: Path, table: str, info: dict, rows: dict, summaries: dict) -> list[Path]:
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = [output_dir / "results.md", output_dir / "results.json"]
    paths[0].write_text(table)
    paths[1].write_text(json.dumps({**info, "results": summaries, "per_image": rows}, indent=2) + "\n")
    return paths


def run_battery_evaluation(args, info: dict) -> list[Path]:
    """``defocusgan-eval --dataset battery``: ``--model`` (with ``--self_ensemble`` / ``--bfloat16_row`` rows) and
    ``--extra_models`` on the battery;
    prints the table, writes ``results.md``, ``results.json`` and ``contact_sheet.png``; returns the paths."""
    from .methods import load_deblur_pipeline
    from .real_report import _restorer, parse_extra_models

    output_dir = Path(args.output_dir)
    existing = [str(output_dir / n) for n in ("results.md", "results.json") if (output_dir / n).exists()]
    if existing and not args.overwrite:
        raise FileExistsError(f"Output file(s) {existing} already exist; pass --overwrite to replace them.")
    if args.model is None:
        raise ValueError("--dataset battery needs --model (a pipeline folder or Hub id).")
    label = args.model_label or f"DefocusGAN ({Path(args.model).name})"
    models = {label: (args.model, False, False)}  # label -> (source, self-ensemble, bf16), as in real_report
    if getattr(args, "self_ensemble", False):
        models[f"{label} + x8 self-ensemble"] = (args.model, True, False)
    if getattr(args, "bfloat16_row", False):
        models[f"{label} (bf16)"] = (args.model, False, True)
    models.update({label: (path, False, False) for label, path in parse_extra_models(args.extra_models).items()})
    images = battery_images(args.battery_seed)
    rows, summaries, outputs = {}, {}, {}
    for label, (source, ensemble, bfloat16) in models.items():
        pipe = load_deblur_pipeline(source, args.device, bfloat16)
        restore = _restorer(pipe, args.tile_size or None, args.tile_overlap, ensemble)
        rows[label], outputs[label] = evaluate_battery(restore, images)
        summaries[label] = summarise(rows[label])
    table = format_battery_table(summaries, args.battery_seed)
    print(table)
    paths = write_battery_outputs(output_dir, table, info, rows, summaries)
    battery_contact_sheet(images, outputs, output_dir / "contact_sheet.png")
    return [*paths, output_dir / "contact_sheet.png"]
