"""What the Gradio app's handlers (``app.py``) do with Gradio besides calling the pipeline: reading and checking
uploads (mistakes become a ``gr.Error`` sentence, notes a ``gr.Warning``), each request's result folder, and
stopping the server with its cached files. Tested through the app (tests/app/test_app.py)."""

from __future__ import annotations

import io
import signal
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from gradio.utils import get_upload_folder

from ..image_io import ImageLoadError, LoadedImage, check_dual_pixel_pair, load_image
from . import utils as app_utils


def uploaded_path(payload) -> str | None:
    """``preprocess`` of the app's image uploads: the uploaded file's path in Gradio's cache, untouched."""
    if payload is None:
        return None
    if payload.path is None:
        raise gr.Error("The image did not arrive as a file; upload it again.")
    return str(payload.path)


@dataclass(frozen=True)
class UploadReader:
    """Reads uploads with every check of :func:`load_image`: refused above ``max_pixels`` (on the header),
    downscaled above ``downscale_pixels``; ``cache_age_s`` is how long Gradio keeps an unused upload."""

    max_pixels: int
    downscale_pixels: int
    cache_age_s: int

    def read(self, path: str, what: str, downscale: bool = True) -> tuple[LoadedImage, list[str]]:
        """Load an upload with every check of :func:`load_image`; errors become messages in the page."""
        data = app_utils.read_and_renew(path)
        if data is None:
            raise gr.Error(
                f"{app_utils.capital(what)} is no longer on the server (uploads are deleted "
                f"{self.cache_age_s // 60} minutes after their last use); upload it again."
            )
        named = io.BytesIO(data)
        named.name = Path(path).name  # messages name the user's file, not the server's cache path
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # load_image records its warnings in `notes` too
            try:
                loaded = load_image(named, max_pixels=self.max_pixels)
            except ImageLoadError as err:
                raise gr.Error(f"Cannot use {what}: {err}.") from err
        notes = list(loaded.notes)
        if downscale:
            (loaded,), notes = self.downscale(loaded, notes=notes)
        return loaded, notes

    def read_pair(self, left: str, right: str) -> tuple[tuple[LoadedImage, LoadedImage], list[str]]:
        """Both DP views, checked as a pair (a size mismatch is an error, identical views a warning), then
        downscaled together."""
        left_image, notes = self.read(left, "the left view", downscale=False)
        right_image, right_notes = self.read(right, "the right view", downscale=False)
        notes += right_notes
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                check_dual_pixel_pair(left_image, right_image)
            except ValueError as err:
                raise gr.Error(app_utils.sentence(str(err))) from err
        for warning in caught:
            notes.append(str(warning.message))
            gr.Warning(app_utils.sentence(str(warning.message)))
        return self.downscale(left_image, right_image, notes=notes)

    def downscale(self, *images: LoadedImage, notes: list[str]) -> tuple[tuple[LoadedImage, ...], list[str]]:
        """Images above ``downscale_pixels`` downscaled (all by the same factor), with a message shown at once."""
        images, message = app_utils.downscale(images, self.downscale_pixels)
        if message is None:
            return images, notes
        gr.Warning(message)
        return images, [*notes, message]


def request_folder(min_age_s: float) -> Path:
    """A fresh folder for one request's results, inside Gradio's cache (served from there, then deleted by it).
    Folders in the cache that Gradio's deletions left empty for ``min_age_s`` are removed first."""
    cache = Path(get_upload_folder())
    cache.mkdir(parents=True, exist_ok=True)
    app_utils.remove_empty_folders(cache, min_age_s=min_age_s)
    return Path(tempfile.mkdtemp(prefix="defocusgan-", dir=cache))


def close(demo: gr.Blocks) -> None:
    """Stop the server: Gradio deletes every upload and result it cached, then the emptied folders go."""
    demo.close()
    app_utils.remove_empty_folders(get_upload_folder())


def _stop_on_sigterm(signum, frame) -> None:
    raise KeyboardInterrupt  # what Gradio's launch() waits for to close the server (a Space stops with SIGTERM)


def serve(demo: gr.Blocks, **launch_kwargs) -> None:
    """``demo.launch()`` until Ctrl-C or SIGTERM, then :func:`close` (without it a SIGTERM left every file on disk)."""
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        demo.launch(**launch_kwargs)
    finally:
        close(demo)
