"""Gradio app (the Hugging Face Space): single-image defocus deblurring and dual-pixel (DP) defocus-map estimation.

``python app.py`` starts it locally (http://127.0.0.1:7860); a Space runs the same file. Named API endpoints, for
``gradio_client``: ``/deblur`` and ``/defocus_map`` (see docs/APP.md).

Model, loaded once at start-up: ``$DEFOCUSGAN_MODEL`` (a pipeline folder or Hub id), else
``checkpoints/defocusgan-synthetic/`` when it exists, else the default configuration with untrained weights (the
page then says so in a banner).

Limits (checked on the file header, before anything is decoded): photos above ``MAX_PIXELS`` are refused; photos
above ``DOWNSCALE_PIXELS`` are downscaled to it (area averaging) with a message saying so.

Storage: Gradio keeps uploads and results in its cache folder (``$GRADIO_TEMP_DIR``, default ``/tmp/gradio``).
Uploads are stored once per content (a folder named by the file's hash), so requests that carry the same file share
it: a request never deletes its upload (another request, queued or a re-run with a checkbox changed, may still
need it). Gradio's ``delete_cache`` deletes uploads and results ``CACHE_AGE_S`` after their last use (each request
renews its upload's age), and everything at shutdown, SIGTERM included; the app removes the folders that leaves
empty. Nothing is written anywhere else.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# Idle OpenMP threads sleep instead of spinning (set before torch starts its OpenMP runtime): with spinning, any
# other process on a 2-vCPU machine makes a 2-thread forward pass up to 10x slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import gradio as gr  # noqa: E402
import torch  # noqa: E402

from defocusgan_hf.app import utils as app_utils  # noqa: E402
from defocusgan_hf.app.handlers import (  # noqa: E402, F401 (close: the app's API)
    UploadReader,
    close,
    request_folder,
    serve,
    uploaded_path,
)
from defocusgan_hf.app.utils import available_cpus, configure_threads  # noqa: E402, F401 (the app's API)
from defocusgan_hf.image_io import (  # noqa: E402
    DEFAULT_MAX_COC,
    LoadedImage,
    defocus_output_paths,
    export_defocus_map,
    save_image,
)
from defocusgan_hf.models import DefocusDeblurNet, DualPixelDefocusNet  # noqa: E402
from defocusgan_hf.pipelines import DefocusDeblurPipeline  # noqa: E402
from defocusgan_hf.pipelines.dual_pixel_views import DualPixelConvention  # noqa: E402
from defocusgan_hf.pipelines.loading import load_pipeline as load_source  # noqa: E402

ROOT = Path(__file__).resolve().parent
DEFAULT_CHECKPOINT = ROOT / "checkpoints" / "defocusgan-synthetic"
EXAMPLES_DIR = ROOT / "examples"

MAX_PIXELS = 40_000_000
"""Refused above 40 MP (read from the header, nothing decoded): 40 MP as float32 RGB is already 0.5 GB."""
DOWNSCALE_PIXELS = 12_000_000
"""Downscaled to 12 MP above it: ≈11 s and 1.4 GB on 2 vCPUs
(benchmarks/bench_app.py), and enough for every phone's default resolution."""
TILE_SIZE, TILE_OVERLAP = 640, 64
"""Tiled inference (bounded memory, <1.1 GB in all). On 2 vCPUs, 640 px tiles deblur 1680×1120 faster than the
pipeline's 512 (6 tiles instead of 12: less overlap) and than 768 or 1024 (more pixels, or slower per pixel)."""
PREVIEW_MAX_SIDE = 2048
"""The before/after slider shows previews of at most this many pixels per side; downloads are full resolution."""
MAX_FILE_SIZE = "100mb"
"""Uploads larger than this are rejected by Gradio before they reach the app."""
CONCURRENCY_LIMIT, QUEUE_SIZE = 1, 16
"""One request at a time uses every core (two requests would only halve each other's speed); 16 may wait."""
CACHE_FREQUENCY_S, CACHE_AGE_S = 60, 600
"""Every minute, Gradio deletes its cached files (uploads and results) not used for 10 minutes."""
MAP_LABEL = "Defocus map: CoC radius (px)"
SPLITS = {"auto (detected from the views)": "auto", "left / right": "horizontal", "top / bottom": "vertical"}
"""The dual-pixel split choices of the app -> ``estimate_defocus_map(split=...)``."""
SPLIT_CHOICES = list(SPLITS)
UNTRAINED_BANNER = (
    "⚠️ **Untrained weights — results are not meaningful.** No trained checkpoint was found "
    "(`$DEFOCUSGAN_MODEL` or `checkpoints/defocusgan-synthetic/`), so the app runs the default configuration with "
    "untrained weights: the deblurring net returns its input unchanged and the defocus map is a near-constant guess."
)


# ----------------------------------------------------------------------------------------------------------------
# Start-up: threads and model
# ----------------------------------------------------------------------------------------------------------------


def load_pipeline(model: str | os.PathLike | None = None) -> tuple[DefocusDeblurPipeline, str | None]:
    """Load the pipeline once: ``model``, else ``$DEFOCUSGAN_MODEL``, else ``checkpoints/defocusgan-synthetic/``.

    Returns ``(pipeline, source)``; ``source`` is None when no checkpoint exists and the default configuration
    was built with untrained weights (seeded). A source that is given but cannot be loaded raises ``OSError``.
    """
    source = model or os.environ.get("DEFOCUSGAN_MODEL") or None
    if source is None and (DEFAULT_CHECKPOINT / "model_index.json").is_file():
        source = DEFAULT_CHECKPOINT
    if source is not None:
        return load_source(source), str(source)
    torch.manual_seed(0)
    pipe = DefocusDeblurPipeline(deblur_net=DefocusDeblurNet().eval(), defocus_net=DualPixelDefocusNet().eval())
    return pipe, None


def display_source(source: str) -> str:
    """The model's name as the page shows it: a folder inside the app relative to it, anything else as given."""
    return app_utils.display_source(source, ROOT)


# ----------------------------------------------------------------------------------------------------------------
# Components
# ----------------------------------------------------------------------------------------------------------------


def image_upload(label: str, elem_id: str) -> gr.Image:
    """An image upload whose file reaches the handler untouched (its path in Gradio's cache).

    ``gr.Image`` would open every upload with Pillow first: a non-image or a decompression bomb then fails with
    Pillow's exception instead of a sentence, and 16-bit PNGs, ICC profiles and EXIF are lost before the app sees
    them. :func:`defocusgan_hf.image_io.load_image` does the checks and the decoding instead. The component's own
    ``preprocess`` is replaced on the instance (a subclass would make Gradio write an ``app.pyi`` stub next to
    this file).
    """
    component = gr.Image(
        type="filepath", image_mode=None, sources=["upload", "clipboard"], label=label, elem_id=elem_id
    )
    component.preprocess = uploaded_path
    return component


# ----------------------------------------------------------------------------------------------------------------
# Handlers
# ----------------------------------------------------------------------------------------------------------------


class DefocusApp:
    """The two requests of the app, as plain methods (tested and benchmarked without a server).

    Args:
        pipe: the loaded :class:`DefocusDeblurPipeline`.
        source: where its weights came from; None for untrained weights.
        max_pixels: uploads above this many pixels are refused (checked on the header).
        downscale_pixels: larger uploads are downscaled to this many pixels.
    """

    def __init__(
        self,
        pipe: DefocusDeblurPipeline,
        source: str | None = None,
        max_pixels: int = MAX_PIXELS,
        downscale_pixels: int = DOWNSCALE_PIXELS,
        tile_size: int = TILE_SIZE,
        tile_overlap: int = TILE_OVERLAP,
    ):
        if not 0 < downscale_pixels <= max_pixels:
            raise ValueError(f"need 0 < downscale_pixels <= max_pixels, got {downscale_pixels} and {max_pixels}.")
        self.pipe, self.source = pipe, source
        self.uploads = UploadReader(int(max_pixels), int(downscale_pixels), CACHE_AGE_S)
        self.tile_size, self.tile_overlap = tile_size, tile_overlap
        self.pipe.set_progress_bar_config(desc="Processing tiles", leave=False)
        self.pipe.enable_channels_last()

    # -- requests ------------------------------------------------------------------------------------------------

    def deblur(self, image: str | None, self_ensemble: bool = False, progress=gr.Progress(track_tqdm=True)):
        """Deblur one photo (``self_ensemble``: average the 8 flips and quarter turns, 8 times the time).
        Returns ``((input preview, result preview), full-resolution PNG, status)``."""
        if not image:
            raise gr.Error("Upload a photo (or pick an example) first.")
        progress(0, desc="Reading the photo")
        loaded, notes = self.uploads.read(image, "the photo")
        start = time.perf_counter()
        # uint8/uint16 out, tile by tile: no full-size float32 copy of the photo
        restored = self.pipe(
            loaded,
            self.tile_size,
            self.tile_overlap,
            "np",
            self_ensemble=bool(self_ensemble),
            output_bit_depth=loaded.bit_depth,
        ).images[0]
        seconds = time.perf_counter() - start
        progress(1, desc="Saving")
        folder, stem = request_folder(CACHE_FREQUENCY_S), app_utils.safe_stem(image)
        result = save_image(
            restored, folder / f"{stem}_deblurred.png", loaded.bit_depth, loaded.icc_profile, loaded.exif
        )
        slider = (self._preview(loaded.pixels, folder / f"{stem}_input_preview.png", loaded),
                  self._preview(restored, folder / f"{stem}_deblurred_preview.png", loaded))  # fmt: skip
        width, height = loaded.size
        tiles = app_utils.tiles_text(loaded.size, self.tile_size, self.tile_overlap)
        ensemble = ", x8 self-ensemble" if self_ensemble else ""
        return (
            slider,
            str(result),
            self._status(f"Deblurred {width}×{height} px in {seconds:.1f} s ({tiles}{ensemble}).", notes),
        )

    def defocus_map(
        self,
        left: str | None,
        right: str | None,
        signed: bool = False,
        split: str = SPLIT_CHOICES[0],
        progress=gr.Progress(track_tqdm=True),
    ):
        """Defocus map and all-in-focus image from DP views. Returns ``((combined view, all-in-focus) previews,
        map preview, 16-bit map PNG, map .npy, all-in-focus PNG, status)``."""
        if not left or not right:
            raise gr.Error("Upload both dual-pixel views, left and right (or pick an example pair).")
        if self.pipe.defocus_net is None:
            raise gr.Error("This model has no defocus-map network; load a pipeline saved with `defocus_net`.")
        progress(0, desc="Reading the views")
        (left_image, right_image), notes = self.uploads.read_pair(left, right)
        start = time.perf_counter()
        if split not in SPLIT_CHOICES:
            raise gr.Error(f"Unknown dual-pixel split {split!r}; choose one of {', '.join(SPLIT_CHOICES)}.")
        out = self.pipe.estimate_defocus_map(
            left_image, right_image, self.tile_size, self.tile_overlap, output_type="np", split=SPLITS[split]
        )
        seconds = time.perf_counter() - start
        progress(1, desc="Saving")
        coc, all_in_focus = out.defocus_maps[0, ..., 0], out.images[0]
        folder, stem = request_folder(CACHE_FREQUENCY_S), app_utils.safe_stem(left)
        files = export_defocus_map(coc, all_in_focus, defocus_output_paths(folder, stem), left_image,
                                   float(self.pipe.defocus_net.config.max_coc), signed, colour_bar=True)  # fmt: skip
        combined = (left_image.array + right_image.array) / 2
        slider = (self._preview(combined, folder / f"{stem}_combined_preview.png", left_image),
                  self._preview(all_in_focus, folder / f"{stem}_all_in_focus_preview.png", left_image))  # fmt: skip
        width, height = left_image.size
        tiles = app_utils.tiles_text(left_image.size, self.tile_size, self.tile_overlap, " per network")
        convention = DualPixelConvention(**out.dual_pixel_convention).describe()
        summary = (
            f"Estimated the defocus map of a {width}×{height} px pair in {seconds:.1f} s ({tiles}; {convention}): "
        )
        files = [str(files[key]) for key in ("color", "png16", "npy", "all_in_focus")]
        return (slider, *files, self._status(summary + app_utils.defocus_map_summary(coc), notes))

    # -- helpers -------------------------------------------------------------------------------------------------

    @staticmethod
    def _preview(array, path: Path, like: LoadedImage) -> str:
        return app_utils.write_preview(array, path, like, PREVIEW_MAX_SIDE)

    def _status(self, summary: str, notes: list[str]) -> str:
        return app_utils.status_text(summary, notes, untrained=self.source is None)


# ----------------------------------------------------------------------------------------------------------------
# Page
# ----------------------------------------------------------------------------------------------------------------


def _examples(*names: str) -> list[str]:
    """Paths of shipped example files (examples/README.md says where they come from)."""
    missing = [name for name in names if not (EXAMPLES_DIR / name).is_file()]
    if missing:
        raise FileNotFoundError(f"example files {missing} are missing from {EXAMPLES_DIR}; see examples/README.md")
    return [str(EXAMPLES_DIR / name) for name in names]


def build_demo(
    pipe: DefocusDeblurPipeline,
    source: str | None = None,
    max_pixels: int = MAX_PIXELS,
    downscale_pixels: int = DOWNSCALE_PIXELS,
) -> gr.Blocks:
    """The page: a "Deblur a photo" tab (``/deblur``) and a "Defocus map from dual-pixel views" tab
    (``/defocus_map``). ``source`` None shows the untrained-weights banner. Queue: one request at a time."""
    app = DefocusApp(pipe, source, max_pixels, downscale_pixels)
    max_coc = float(pipe.defocus_net.config.max_coc) if pipe.defocus_net is not None else DEFAULT_MAX_COC
    with gr.Blocks(title="DefocusGAN: defocus deblurring", delete_cache=(CACHE_FREQUENCY_S, CACHE_AGE_S)) as demo:
        gr.Markdown(
            "# DefocusGAN: defocus deblurring\n"
            "Single-image defocus deblurring with a learnable blur kernel (Zhai et al., AAAI 2023), and defocus "
            "(circle-of-confusion) maps from the two views of a dual-pixel sensor. "
            f"Photos above {downscale_pixels / 1e6:g} MP are downscaled to it, above {max_pixels / 1e6:g} MP refused. "
            f"Uploads and results are deleted {CACHE_AGE_S // 60} minutes after their last use, and when the app stops."
        )
        gr.Markdown(
            UNTRAINED_BANNER if source is None else f"Model: `{display_source(source)}`", elem_id="model-banner"
        )
        with gr.Tab("Deblur a photo"):
            with gr.Row():
                with gr.Column():
                    image = image_upload("Blurry photo (JPEG, PNG, TIFF, WebP; 8 or 16 bit)", "deblur-input")
                    ensemble = gr.Checkbox(
                        label="Self-ensemble: average 8 flips and turns (8× slower, slightly sharper)",
                        value=False,
                        elem_id="deblur-ensemble",
                    )
                    button = gr.Button("Deblur", variant="primary", elem_id="deblur-button")
                    gr.Examples(
                        _examples("coffee_defocused.jpg", "rocket_defocused.jpg"), inputs=[image], cache_examples=False
                    )
                with gr.Column():
                    slider = gr.ImageSlider(
                        label="Before / after",
                        format="png",
                        type="filepath",
                        interactive=False,
                        elem_id="deblur-result",
                    )
                    result = gr.File(label="Deblurred PNG, full resolution", interactive=False, height=80)
                    status = gr.Markdown(label="Status", elem_id="deblur-status")
            button.click(app.deblur, inputs=[image, ensemble], outputs=[slider, result, status], api_name="deblur")
        with gr.Tab("Defocus map from dual-pixel views"):
            with gr.Row():
                left = image_upload("Left DP view", "dp-left")
                right = image_upload("Right DP view", "dp-right")
                with gr.Column():
                    signed = gr.Checkbox(label="Colour near (blue) and far (red) separately", value=False)
                    split = gr.Radio(
                        SPLIT_CHOICES,
                        value=SPLIT_CHOICES[0],
                        label="How the sensor splits its pixels",
                        info="DSLRs split left/right, many phones top/bottom (give the top view as 'left').",
                    )
                    map_button = gr.Button("Estimate the defocus map", variant="primary", elem_id="dp-button")
                    gr.Examples(
                        [_examples("chelsea_dp_left.jpg", "chelsea_dp_right.jpg")],
                        inputs=[left, right],
                        cache_examples=False,
                    )
            with gr.Row():
                map_slider = gr.ImageSlider(
                    label="Combined view / all-in-focus", format="png", type="filepath", interactive=False
                )
                with gr.Column():
                    # The caption goes above the image, not in Gradio's label badge, which sits on the image's
                    # top-left corner and hid that part of the map.
                    gr.Markdown(f"**{MAP_LABEL}**", elem_id="dp-map-caption")
                    figure = gr.Image(
                        label=MAP_LABEL,
                        show_label=False,
                        format="png",
                        type="filepath",
                        interactive=False,
                        elem_id="dp-map",
                    )
            with gr.Row():
                map_png = gr.File(label="Defocus map, 16-bit PNG", interactive=False, height=80)
                map_npy = gr.File(label="Defocus map, NumPy .npy", interactive=False, height=80)
                all_in_focus = gr.File(label="All-in-focus PNG", interactive=False, height=80)
            map_status = gr.Markdown(label="Status", elem_id="dp-status")
            gr.Markdown(
                "The map is the signed circle-of-confusion radius in pixels: positive behind the focal plane (far), "
                "negative in front of it (near); 0 is in focus. `.npy`: float32 (H, W). 16-bit PNG: "
                f"`coc = value / 65535 × {2 * max_coc:g} − {max_coc:g}` (read it with "
                "`defocusgan_hf.image_io.load_defocus_map_png16`)."
            )
            map_button.click(
                app.defocus_map,
                inputs=[left, right, signed, split],
                outputs=[map_slider, figure, map_png, map_npy, all_in_focus, map_status],
                api_name="defocus_map",
            )
    demo.queue(default_concurrency_limit=CONCURRENCY_LIMIT, max_size=QUEUE_SIZE)
    return demo


LAUNCH_KWARGS = {"max_file_size": MAX_FILE_SIZE, "theme": gr.themes.Soft()}


def build_error_page(error: BaseException, source: str | None) -> gr.Blocks:
    """What a visitor sees when the model cannot be loaded at start-up (a bad ``config.json``, missing weights, an
    unreachable Hub repo): the reason in a sentence; the traceback is in the log."""
    where = f"`{display_source(source)}`" if source else "the model"
    with gr.Blocks(title="DefocusGAN: the model could not be loaded") as page:
        gr.Markdown(
            "# DefocusGAN: the model could not be loaded\n"
            f"The app could not start because {where} could not be loaded:\n\n"
            f"> {app_utils.sentence(str(error))}\n\n"
            "If you run this app (or this Space), check `$DEFOCUSGAN_MODEL` and the model folder; the log holds the "
            "full error. Nothing can be processed until it is fixed.",
            elem_id="startup-error",
        )
    return page


def startup_demo() -> gr.Blocks:
    """The page to serve: the app with its model, or :func:`build_error_page` when the model cannot be loaded
    (the cause goes to the log, with its traceback)."""
    source = os.environ.get("DEFOCUSGAN_MODEL") or (str(DEFAULT_CHECKPOINT) if DEFAULT_CHECKPOINT.is_dir() else None)
    try:
        pipe, source = load_pipeline()
        print(f"DefocusGAN app: model {source or 'untrained (default configuration)'}")
        return build_demo(pipe, source)
    except (OSError, ValueError, TypeError, KeyError) as error:
        logging.getLogger("defocusgan.app").exception(f"DefocusGAN app: the model {source} could not be loaded")
        return build_error_page(error, source)


def main() -> None:
    threads = configure_threads()
    demo = startup_demo()
    print(f"DefocusGAN app: {threads} CPU threads")
    serve(demo, **LAUNCH_KWARGS)


if __name__ == "__main__":
    main()
