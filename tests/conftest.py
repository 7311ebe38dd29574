import os

# Before torch starts OpenMP: idle threads sleep instead of spinning, so tests beside another process (a training
# run, a second test worker) do not oversubscribe the cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)  # the tests use tiny tensors: one thread is as fast and never oversubscribes


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def save_png8(image, path) -> None:
    """An ``(H, W, 3)`` or ``(H, W)`` float image in [0, 1] as an 8-bit PNG (rounded)."""
    import numpy as np
    from PIL import Image

    Image.fromarray((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)).save(path)


@pytest.fixture
def real_scenes(tmp_path):
    """Factory of fabricated real-scene folders in the layout of ``../shared/real/dpdd_gif`` (``NAME/sharp.png``,
    ``NAME/blurred.png``, optional reference outputs and DP views), written under ``tmp_path / folder``.

    ``make(names, shape=(H, W), seed=0, smooth=0, blur=..., references={file_stem: fn}, dp_views=fn)``: the sharp
    image is seeded uniform noise (Gaussian-smoothed by ``smooth`` px), ``blurred = blur(sharp)`` (default: half the
    contrast), each reference ``fn(sharp)``, and ``dp_views(sharp) -> (a, b)``. Returns the root folder."""
    import numpy as np
    from scipy import ndimage

    def make(
        names=("00", "01", "02"),
        shape=(32, 48),
        *,
        seed=0,
        smooth=0.0,
        blur=lambda sharp: 0.5 + 0.5 * (sharp - 0.5),
        references=None,
        dp_views=None,
        folder="scenes",
    ):
        rng = np.random.default_rng(seed)
        root = tmp_path / folder
        for name in names:
            scene = root / name
            scene.mkdir(parents=True)
            sharp = rng.random((*shape, 3))
            if smooth:
                sharp = ndimage.gaussian_filter(sharp, (smooth, smooth, 0))
            save_png8(sharp, scene / "sharp.png")
            save_png8(blur(sharp), scene / "blurred.png")
            for stem, reference in (references or {}).items():
                save_png8(reference(sharp), scene / f"{stem}.png")
            if dp_views is not None:
                for file, view in zip(("dp_a.png", "dp_b.png"), dp_views(sharp)):
                    save_png8(view, scene / file)
        return root

    return make
