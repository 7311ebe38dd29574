"""The Gradio app through its API: `gradio_client` against the app launched on a local port, with a tiny pipeline
saved in a temporary folder (the shipped checkpoint is not needed). Small limits (1 MP refused, 0.3 MP downscaled)
let the size guards be tested on small images."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

from defocusgan_hf.image_io import load_defocus_map_png16
from defocusgan_hf.models import DefocusDeblurNet, DualPixelDefocusNet
from defocusgan_hf.pipelines import DefocusDeblurPipeline

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
MAX_PIXELS, DOWNSCALE_PIXELS = 1_000_000, 300_000


def load_app_module():
    """Import app.py from the repository root (it is a script, not part of the package)."""
    if "app" in sys.modules and getattr(sys.modules["app"], "__file__", None) == str(ROOT / "app.py"):
        return sys.modules["app"]
    spec = importlib.util.spec_from_file_location("app", ROOT / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["app"] = module
    spec.loader.exec_module(module)
    return module


def tiny_pipeline() -> DefocusDeblurPipeline:
    """A pipeline small enough for tests, with non-zero output layers (the default ones start as identity/zero)."""
    torch.manual_seed(0)
    deblur = DefocusDeblurNet(level_channels=(4, 4, 8, 8, 8), branch_depths=(0, 1, 1, 1))
    torch.nn.init.normal_(deblur.tail.weight, std=0.05)
    defocus = DualPixelDefocusNet(level_channels=(4, 8, 8), branch_depths=(1, 1))
    torch.nn.init.normal_(defocus.tail.weight, std=0.5)
    return DefocusDeblurPipeline(deblur_net=deblur.eval(), defocus_net=defocus.eval())


@pytest.fixture(scope="module")
def app_module():
    return load_app_module()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-pipeline")
    tiny_pipeline().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def server(app_module, model_dir, tmp_path_factory):
    """``(client, demo, cache folder, pipeline)`` for an app on a local port, with its own Gradio cache."""
    cache = tmp_path_factory.mktemp("gradio-cache")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the test machine is shared; one thread cannot oversubscribe it
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADIO_TEMP_DIR", str(cache))
        pipe, source = app_module.load_pipeline(model_dir)
        demo = app_module.build_demo(pipe, source, max_pixels=MAX_PIXELS, downscale_pixels=DOWNSCALE_PIXELS)
        _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **app_module.LAUNCH_KWARGS)
        try:
            client = Client(url, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))
            yield client, demo, cache, pipe
        finally:
            demo.close()
            torch.set_num_threads(threads)


def write_image(path: Path, array: np.ndarray, **options) -> Path:
    """Write uint8/uint16 arrays: 16-bit colour through OpenCV (Pillow cannot), the rest through Pillow."""
    if array.dtype == np.uint16 and array.ndim == 3:
        cv2.imwrite(str(path), array[..., ::-1].copy())
    else:
        Image.fromarray(array).save(path, **options)
    return path


def gradient(height: int, width: int, channels: int = 3, dtype=np.uint8) -> np.ndarray:
    """A smooth colour image (compresses well, unlike noise)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    planes = [x / width, y / height, 0.5 + 0.5 * np.sin(x / 7 + y / 11)][:channels]
    scale = 65535 if dtype == np.uint16 else 255
    array = np.round(np.stack(planes, -1) * scale).astype(dtype)
    return array[..., 0] if channels == 1 else array


def deblur(client, path, self_ensemble=False):
    return client.predict(handle_file(str(path)), self_ensemble, api_name="/deblur")


# ----------------------------------------------------------------------------------------------------------------
# Endpoints on the examples
# ----------------------------------------------------------------------------------------------------------------


def test_api_has_the_two_named_endpoints(server):
    client = server[0]
    assert set(client.view_api(return_format="dict", print_info=False)["named_endpoints"]) == {
        "/deblur",
        "/defocus_map",
    }


def test_deblur_example_gives_the_pipeline_output_at_full_resolution(server, app_module):
    client, _, _, pipe = server
    tiles = {"tile_size": app_module.TILE_SIZE, "tile_overlap": app_module.TILE_OVERLAP}
    example = EXAMPLES / "coffee_defocused.jpg"
    (before, after), result, status = deblur(client, example)
    with Image.open(result) as image:
        assert image.format == "PNG" and image.mode == "RGB"
        output = np.asarray(image, dtype=np.float32) / 255
    with Image.open(example) as image:
        size = image.size
        expected = pipe(image, **tiles, output_type="np").images[0]
    assert output.shape == (size[1], size[0], 3)
    np.testing.assert_allclose(output, expected, atol=1 / 255 + 1e-6)
    assert Image.open(before).size == Image.open(after).size == size
    assert f"{size[0]}×{size[1]} px" in status


def test_self_ensemble_checkbox_gives_the_pipelines_averaged_output(server, app_module):
    client, _, _, pipe = server
    tiles = {"tile_size": app_module.TILE_SIZE, "tile_overlap": app_module.TILE_OVERLAP}
    example = EXAMPLES / "rocket_defocused.jpg"
    _, result, status = deblur(client, example, self_ensemble=True)
    with Image.open(result) as image:
        output = np.asarray(image, dtype=np.float32) / 255
    with Image.open(example) as image:
        expected = pipe(image, **tiles, output_type="np", self_ensemble=True).images[0]
        plain = pipe(image, **tiles, output_type="np").images[0]
    np.testing.assert_allclose(output, expected, atol=1 / 255 + 1e-6)
    assert np.abs(expected - plain).max() > 2 / 255  # the checkbox changed the computation
    assert "x8 self-ensemble" in status


def test_defocus_map_example_downloads_agree_with_the_pipeline(server, app_module):
    client, _, _, pipe = server
    tiles = {"tile_size": app_module.TILE_SIZE, "tile_overlap": app_module.TILE_OVERLAP}
    left, right = EXAMPLES / "chelsea_dp_left.jpg", EXAMPLES / "chelsea_dp_right.jpg"
    slider, figure, png16, npy, all_in_focus, status = client.predict(
        handle_file(str(left)), handle_file(str(right)), False, api_name="/defocus_map"
    )
    with Image.open(left) as a, Image.open(right) as b:
        expected = pipe.estimate_defocus_map(a, b, **tiles, output_type="np")
        width, height = a.size
    coc = np.load(npy)
    assert coc.shape == (height, width) and coc.dtype == np.float32
    np.testing.assert_allclose(coc, expected.defocus_maps[0, ..., 0], atol=1e-4)
    np.testing.assert_allclose(load_defocus_map_png16(png16), coc, atol=25 / 65535 + 1e-5)
    with Image.open(png16) as image:
        assert image.mode.startswith("I;16") or image.mode == "I"
    assert Image.open(all_in_focus).size == Image.open(slider[1]).size == (width, height)
    assert Image.open(figure).mode == "RGB"  # the colour preview with its scale bar
    assert "CoC" in status and "horizontal split (detected" in status


def test_defocus_map_of_a_top_bottom_pair_is_detected_and_transposed(server, tmp_path):
    client = server[0]
    paths = {}
    for side in ("left", "right"):
        with Image.open(EXAMPLES / f"chelsea_dp_{side}.jpg") as image:
            paths[side] = tmp_path / f"{side}_rotated.png"
            image.transpose(Image.Transpose.TRANSPOSE).save(paths[side])
    *_, npy, _, status = client.predict(
        handle_file(str(paths["left"])), handle_file(str(paths["right"])), False, "auto (detected from the views)",
        api_name="/defocus_map",
    )  # fmt: skip
    assert "vertical split (detected" in status
    *_, npy_lr, _, _ = client.predict(
        handle_file(str(EXAMPLES / "chelsea_dp_left.jpg")), handle_file(str(EXAMPLES / "chelsea_dp_right.jpg")), False,
        "left / right", api_name="/defocus_map",
    )  # fmt: skip
    np.testing.assert_allclose(np.load(npy), np.load(npy_lr).T, atol=2e-2)


# ----------------------------------------------------------------------------------------------------------------
# Bad input: a sentence in the page, never a traceback
# ----------------------------------------------------------------------------------------------------------------


def _bomb(path: Path) -> Path:
    Image.new("1", (15000, 12000)).save(path)  # 180 MP, 22 kB: beyond Pillow's decompression-bomb limit
    return path


BAD_INPUTS = {
    "not_an_image": (lambda p: p.write_bytes(b"this is not an image\n" * 20), "is not an image"),
    "empty_file": (lambda p: p.write_bytes(b""), "empty"),
    "truncated_jpeg": (lambda p: p.write_bytes((EXAMPLES / "coffee_defocused.jpg").read_bytes()[:4000]), "truncated"),
    "decompression_bomb": (_bomb, "megapixels"),
    "too_many_pixels": (lambda p: write_image(p, gradient(1000, 1200)), "limit is 1.0 MP"),
    "tiny_image": (lambda p: write_image(p, gradient(8, 8)), "at least 16×16"),
}


@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
def test_bad_input_gets_a_clear_message(server, tmp_path, kind):
    make, phrase = BAD_INPUTS[kind]
    path = tmp_path / f"{kind}.png"
    make(path)
    with pytest.raises(AppError) as error:
        deblur(server[0], path)
    message = str(error.value)
    assert phrase in message and "Traceback" not in message
    assert "/tmp" not in message and str(tmp_path) not in message  # names the user's file, not server paths


def test_dual_pixel_views_of_different_sizes_are_refused(server, tmp_path):
    left = write_image(tmp_path / "left.png", gradient(48, 64))
    right = write_image(tmp_path / "right.png", gradient(48, 60))
    with pytest.raises(AppError, match="must have the same size"):
        server[0].predict(handle_file(str(left)), handle_file(str(right)), False, api_name="/defocus_map")


def test_a_missing_dual_pixel_view_is_asked_for(server, tmp_path):
    left = write_image(tmp_path / "left.png", gradient(48, 64))
    with pytest.raises(AppError, match="Upload both dual-pixel views"):
        server[0].predict(handle_file(str(left)), None, False, api_name="/defocus_map")


def test_identical_dual_pixel_views_are_flagged(server, tmp_path):
    view = write_image(tmp_path / "view.png", gradient(48, 64))
    *_, status = server[0].predict(handle_file(str(view)), handle_file(str(view)), False, api_name="/defocus_map")
    assert "identical" in status


# ----------------------------------------------------------------------------------------------------------------
# Conversions, formats, metadata, size guard
# ----------------------------------------------------------------------------------------------------------------


CONVERTED = {
    "grayscale": (gradient(40, 56, channels=1), "grayscale"),
    "rgba": (np.dstack([gradient(40, 56), np.full((40, 56), 128, np.uint8)]), "composited over white"),
    "palette": (None, "palette"),
}


@pytest.mark.parametrize("kind", sorted(CONVERTED))
def test_grayscale_rgba_and_palette_photos_are_converted_to_rgb(server, tmp_path, kind):
    array, note = CONVERTED[kind]
    path = tmp_path / f"{kind}.png"
    if array is None:
        Image.fromarray(gradient(40, 56)).convert("P").save(path)
    else:
        write_image(path, array)
    _, result, status = deblur(server[0], path)
    with Image.open(result) as image:
        assert image.mode == "RGB" and image.size == (56, 40)
    assert note in status


def test_16_bit_photo_gives_a_16_bit_png(server, tmp_path):
    path = write_image(tmp_path / "deep.png", gradient(40, 56, dtype=np.uint16))
    _, result, _ = deblur(server[0], path)
    output = cv2.imread(result, cv2.IMREAD_UNCHANGED)
    assert output.dtype == np.uint16 and output.shape == (40, 56, 3)


@pytest.mark.parametrize("suffix", [".tif", ".webp", ".jpg"])
def test_tiff_webp_and_jpeg_are_accepted(server, tmp_path, suffix):
    path = write_image(tmp_path / f"photo{suffix}", gradient(40, 56))
    _, result, _ = deblur(server[0], path)
    assert Image.open(result).size == (56, 40)


def test_exif_orientation_is_applied_and_the_colour_profile_carried(server, tmp_path):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90° clockwise: portrait
    path = tmp_path / "phone.jpg"
    Image.fromarray(gradient(40, 56)).save(path, exif=exif.tobytes(), icc_profile=icc, quality=95)
    (before, after), result, _ = deblur(server[0], path)
    for output in (result, before, after):
        with Image.open(output) as image:
            assert image.size == (40, 56)
            assert image.info.get("icc_profile") == icc
            assert image.getexif().get(0x0112, 1) == 1  # pixels are upright; no orientation left to apply


def test_large_photo_is_downscaled_with_a_message(server, tmp_path):
    path = write_image(tmp_path / "large.png", gradient(500, 800))  # 0.4 MP > 0.3 MP
    _, result, status = deblur(server[0], path)
    width, height = Image.open(result).size
    assert width * height <= DOWNSCALE_PIXELS and abs(width / height - 800 / 500) < 0.01
    assert f"downscaled to {width}×{height} px" in status


# ----------------------------------------------------------------------------------------------------------------
# Storage, queue, model loading
# ----------------------------------------------------------------------------------------------------------------


def upload(client: Client, path: Path) -> str:
    """Upload ``path`` as the page does; its path on the server (in the app's Gradio cache)."""
    with open(path, "rb") as handle:
        response = httpx.post(client.upload_url, files=[("files", (path.name, handle))])
    response.raise_for_status()
    return response.json()[0]


def user_files(cache: Path) -> list[Path]:
    """What is in the cache apart from the shipped examples' copies (Gradio keeps those for every visitor)."""
    return [p for p in cache.rglob("*") if p.is_file() and not (EXAMPLES / p.name).is_file()]


def test_same_file_from_8_concurrent_clients_and_a_rerun_all_succeed_and_nothing_is_left(
    app_module, model_dir, tmp_path, monkeypatch
):
    """Gradio stores one upload per content: requests carrying the same photo share it, so none may delete it. The
    re-run sends the server path again with the checkbox changed, as the browser does (no new upload)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    pipe, source = app_module.load_pipeline(model_dir)
    demo = app_module.build_demo(pipe, source, max_pixels=MAX_PIXELS, downscale_pixels=DOWNSCALE_PIXELS)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **app_module.LAUNCH_KWARGS)
    photo = write_image(tmp_path / "same.jpg", gradient(256, 256), quality=90)
    try:

        def request(index: int):
            client = Client(url, verbose=False, download_files=str(tmp_path / f"downloads-{index}"))
            return deblur(client, photo)

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(request, range(8)))
        assert len({Path(result).read_bytes() for _, result, _ in results}) == 1
        client = Client(url, verbose=False, download_files=str(tmp_path / "downloads-rerun"))
        on_server = {"path": upload(client, photo), "orig_name": photo.name}
        first = client.predict(on_server, False, api_name="/deblur")
        again = client.predict(on_server, True, api_name="/deblur")
        assert "self-ensemble" not in first[2] and "self-ensemble" in again[2]
        assert user_files(cache)  # kept for more requests until Gradio's delete_cache expires them
    finally:
        app_module.close(demo)
    assert user_files(cache) == []
    assert [p for p in cache.rglob("*") if p.is_dir() and not any(p.iterdir())] == []


def test_empty_folders_are_removed_once_old_enough(app_module, tmp_path):
    (tmp_path / "defocusgan-old").mkdir()
    (tmp_path / "hash" / "nested").mkdir(parents=True)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "file.png").write_bytes(b"x")
    assert app_module.app_utils.remove_empty_folders(tmp_path, min_age_s=3600) == 0  # just made: may be filling
    assert app_module.app_utils.remove_empty_folders(tmp_path) == 3
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["file.png", "full"]


def test_sigterm_closes_the_app_and_deletes_what_it_cached(model_dir, tmp_path):
    """A Space stops its app with SIGTERM: uploads and results must not stay on disk."""
    cache, port = tmp_path / "cache", free_port()
    env = {**os.environ, "GRADIO_TEMP_DIR": str(cache), "DEFOCUSGAN_MODEL": str(model_dir)}
    env.update(GRADIO_SERVER_PORT=str(port), DEFOCUSGAN_NUM_THREADS="1", OMP_NUM_THREADS="1")
    process = subprocess.Popen([sys.executable, str(ROOT / "app.py")], env=env, cwd=tmp_path)
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        client = Client(url, verbose=False, download_files=str(tmp_path / "downloads"))
        deblur(client, write_image(tmp_path / "mine.png", gradient(40, 56)))
        assert user_files(cache)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert user_files(cache) == []
    assert [p for p in cache.rglob("*") if p.is_dir() and not any(p.iterdir())] == []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_results_are_written_to_gradio_cache_which_deletes_them(server, app_module):
    client, demo, cache, _ = server
    _, result, _ = deblur(client, EXAMPLES / "rocket_defocused.jpg")
    assert list(cache.rglob(Path(result).name))  # served from the cache, nowhere else
    assert demo.delete_cache == (app_module.CACHE_FREQUENCY_S, app_module.CACHE_AGE_S)
    assert demo._queue.default_concurrency_limit == app_module.CONCURRENCY_LIMIT == 1


def test_example_files_survive_a_request(server, app_module):
    """Picking an example sends its cached copy; deleting uploads must not delete it for the next visitor."""
    _, demo, _, pipe = server
    handler = app_module.DefocusApp(pipe, "tiny")
    upload = next(block for block in demo.blocks.values() if getattr(block, "elem_id", None) == "deblur-input")
    cached_example = next(iter(upload.keep_in_cache))
    handler.deblur(cached_example)
    assert Path(cached_example).is_file()


def test_an_upload_that_is_gone_asks_to_upload_again(server, app_module, tmp_path):
    handler = app_module.DefocusApp(server[3], "tiny")
    with pytest.raises(app_module.gr.Error, match="upload it again"):
        handler.deblur(str(tmp_path / "deleted.png"))


def test_a_pipeline_without_defocus_net_explains_itself(app_module, tmp_path):
    pipe = tiny_pipeline()
    pipe = DefocusDeblurPipeline(deblur_net=pipe.deblur_net)
    view = write_image(tmp_path / "view.png", gradient(40, 56))
    with pytest.raises(app_module.gr.Error, match="no defocus-map network"):
        app_module.DefocusApp(pipe, "tiny").defocus_map(str(view), str(view))


def test_model_comes_from_env_var_then_checkpoint_folder(app_module, model_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("DEFOCUSGAN_MODEL", str(model_dir))
    pipe, source = app_module.load_pipeline()
    assert source == str(model_dir) and tuple(pipe.deblur_net.config.level_channels) == (4, 4, 8, 8, 8)
    monkeypatch.delenv("DEFOCUSGAN_MODEL")
    monkeypatch.setattr(app_module, "DEFAULT_CHECKPOINT", model_dir)
    assert app_module.load_pipeline()[1] == str(model_dir)
    monkeypatch.setenv("DEFOCUSGAN_MODEL", str(tmp_path / "missing"))
    with pytest.raises((OSError, ValueError), match="missing"):  # a start-up error naming the source
        app_module.load_pipeline()


def test_without_a_checkpoint_the_page_says_the_weights_are_untrained(app_module, monkeypatch, tmp_path):
    monkeypatch.delenv("DEFOCUSGAN_MODEL", raising=False)
    monkeypatch.setattr(app_module, "DEFAULT_CHECKPOINT", tmp_path / "none")
    pipe, source = app_module.load_pipeline()
    assert source is None and pipe.deblur_net.config.level_channels == DefocusDeblurNet().config.level_channels
    texts = [getattr(b, "value", None) for b in app_module.build_demo(pipe, source).blocks.values()]
    assert any(isinstance(t, str) and "untrained weights — results are not meaningful" in t.lower() for t in texts)
    trained = [getattr(b, "value", None) for b in app_module.build_demo(pipe, "some/model").blocks.values()]
    assert not any(isinstance(t, str) and "untrained" in t.lower() for t in trained)


def test_thread_count_follows_the_environment(app_module, monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("DEFOCUSGAN_NUM_THREADS", "1")
        assert app_module.configure_threads() == 1 == torch.get_num_threads()
        monkeypatch.delenv("DEFOCUSGAN_NUM_THREADS")
        assert app_module.configure_threads() == app_module.available_cpus() <= (os.cpu_count() or 1)
    finally:
        torch.set_num_threads(before)


def test_example_files_are_small_and_documented():
    files = [p for p in EXAMPLES.iterdir() if p.suffix in (".jpg", ".png")]
    assert sum(p.stat().st_size for p in files) < 400_000
    readme = (EXAMPLES / "README.md").read_text()
    assert all(p.name in readme for p in files)


def test_the_page_names_a_bundled_model_by_its_path_in_the_app(app_module, tmp_path):
    """A folder inside the app shows relative to it (not the machine's /home/user/app/... on a Space); a Hub id or
    a folder elsewhere shows as given."""
    bundled = str(app_module.DEFAULT_CHECKPOINT)
    assert app_module.display_source(bundled) == "checkpoints/defocusgan-synthetic"
    assert app_module.display_source("org/defocusgan") == "org/defocusgan"
    assert app_module.display_source(str(tmp_path)) == str(tmp_path)


@pytest.mark.parametrize("problem", ["config_key", "weights", "hub"])
def test_a_model_that_cannot_be_loaded_gives_a_page_that_says_why(
    app_module, model_dir, tmp_path, monkeypatch, problem, caplog
):
    """A Space visitor sees a sentence instead of a dead app; the log has the traceback."""
    import json
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    if problem == "config_key":
        config = json.loads((broken / "deblur_net" / "config.json").read_text())
        (broken / "deblur_net" / "config.json").write_text(json.dumps({**config, "levle_channels": [4]}))
        expected = "levle_channels"
    elif problem == "weights":
        (broken / "deblur_net" / "diffusion_pytorch_model.safetensors").unlink()
        expected = "weights of the `deblur_net` component are missing"
    else:
        broken, expected = "nobody/no-such-defocusgan-model", "Hub repo"
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("DEFOCUSGAN_MODEL", str(broken))
    with caplog.at_level("ERROR"):
        page = app_module.startup_demo()
    texts = " ".join(str(getattr(b, "value", "")) for b in page.blocks.values())
    assert "could not be loaded" in texts and expected in texts
    assert "Traceback" in caplog.text or caplog.records[-1].exc_info


def test_the_defocus_map_has_its_caption_above_it_not_over_its_corner(server, app_module):
    """Gradio's label badge covers the top-left corner of an image; the map's caption is a line above it."""
    blocks = list(server[1].blocks.values())
    figure = next(b for b in blocks if getattr(b, "elem_id", None) == "dp-map")
    caption = next(b for b in blocks if getattr(b, "elem_id", None) == "dp-map-caption")
    assert figure.show_label is False and app_module.MAP_LABEL in caption.value
