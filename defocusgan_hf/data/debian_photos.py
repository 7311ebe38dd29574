"""Free-licence photographs from Debian's desktop-background packages, as sharp sources for the synthetic engine.

scikit-image ships only a handful of photographs. Debian's wallpaper packages install from the package registry
(no other download site), and a few of their images are photographs that are in focus across the whole frame.
The list below was chosen by looking at every image of these packages at thumbnail and full size: abstract art,
renders and photos with a shallow depth of field (bokeh backgrounds would teach the generator that blur is the
target) were left out. Each package's Debian ``copyright`` file is copied beside the photos.

    python -m defocusgan_hf.data.debian_photos data/photos     # then: train_defocusgan.py --image_dir data/photos

Needs ``apt-get`` and ``dpkg`` (Debian or Ubuntu); the photos are not committed into the project.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

DEBIAN_PHOTOS: dict[str, tuple[str, ...]] = {
    "lomiri-wallpapers-16.04": (
        "usr/share/backgrounds/Bridge_by_Sander_Klootwijk.jpg",
        "usr/share/backgrounds/Picture_0B_by_freespace.jpg",
        "usr/share/backgrounds/Wine_by_Jakkub_Mede.jpg",
        "usr/share/backgrounds/aitzgorri_by_Aitzol_Berasategi.jpg",
        "usr/share/backgrounds/life_by_Aitzol_Berasategi.jpg",
        "usr/share/backgrounds/picosdeeuropa_by_Aitzol_Berasategi.jpg",
        "usr/share/backgrounds/sunset_by_Aitzol_Berasategi.jpg",
    ),
    "mate-backgrounds": ("usr/share/backgrounds/mate/nature/Blinds.jpg",),
    "plasma-workspace-wallpapers": (
        "usr/share/wallpapers/ColorfulCups/contents/images/2560x1600.jpg",
        "usr/share/wallpapers/EveningGlow/contents/images/2560x1600.jpg",
        "usr/share/wallpapers/Grey/contents/images/2560x1600.jpg",
        "usr/share/wallpapers/OneStandsOut/contents/images/2560x1600.jpg",
        "usr/share/wallpapers/Path/contents/images/2560x1600.jpg",
    ),
}
"""Debian package -> the in-focus photographs taken from it (paths inside the package)."""


def photo_name(package: str, path: str) -> str:
    """File name in the destination folder: the wallpaper's own name (plasma's are folders of sizes)."""
    parts = Path(path).parts
    stem = parts[parts.index("contents") - 1] if "contents" in parts else Path(path).stem
    return f"{package}--{stem}{Path(path).suffix}"


def fetch_debian_photos(destination: str | Path, photos: dict[str, tuple[str, ...]] = DEBIAN_PHOTOS) -> list[Path]:
    """Download the packages with ``apt-get download``, unpack them with ``dpkg -x``, and copy the photos and
    each package's ``copyright`` file into ``destination``. Existing files are kept. Returns the photo paths."""
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    wanted = {
        p: paths for p, paths in photos.items() if any(not (destination / photo_name(p, x)).exists() for x in paths)
    }
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        if wanted:
            subprocess.run(["apt-get", "download", *wanted], cwd=work, check=True, capture_output=True)
        for package, paths in wanted.items():
            deb = next(work.glob(f"{package}_*.deb"))
            unpacked = work / package
            subprocess.run(["dpkg", "-x", str(deb), str(unpacked)], check=True)
            for path in paths:
                target = destination / photo_name(package, path)
                if not target.exists():
                    shutil.copyfile(unpacked / path, target)
            shutil.copyfile(unpacked / "usr/share/doc" / package / "copyright", destination / f"{package}.copyright")
    return [destination / photo_name(p, x) for p, paths in photos.items() for x in paths]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("destination", help="Folder for the photos (created; existing files are kept).")
    args = parser.parse_args(argv)
    paths = fetch_debian_photos(args.destination)
    print(f"{len(paths)} photos in {args.destination}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
