"""Image input/output: validated loading, PIL / NumPy / torch conversions, 16-bit files, safe saving, defocus maps.

Modules: :mod:`.decoding` (``load_image`` and its checks), :mod:`.colour` (pixel conversions of decoded images),
:mod:`.conversion` (``to_tensor`` / ``to_output``), :mod:`.encoding` (``save_image``, safe writing), :mod:`.pairs`
(the dual-pixel pair check) and :mod:`.defocus_map` (previews, 16-bit and ``.npy`` maps, ``export_defocus_map``).
Every public name is importable from here.
"""

from .conversion import to_output, to_tensor
from .decoding import load_image
from .defocus_map import (
    DEFOCUS_OUTPUTS,
    colorize_defocus_map,
    defocus_map_figure,
    defocus_output_paths,
    export_defocus_map,
    load_defocus_map_png16,
    save_defocus_map_npy,
    save_defocus_map_png16,
)
from .encoding import save_image
from .pairs import check_dual_pixel_pair
from .types import (
    DEFAULT_MAX_COC,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_SIZE,
    HIGH_BIT_DEPTH_SUFFIXES,
    IMAGE_SUFFIXES,
    SUPPORTED_FORMATS,
    ImageLoadError,
    LoadedImage,
)

__all__ = [
    "DEFAULT_MAX_COC",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MIN_SIZE",
    "DEFOCUS_OUTPUTS",
    "HIGH_BIT_DEPTH_SUFFIXES",
    "IMAGE_SUFFIXES",
    "SUPPORTED_FORMATS",
    "ImageLoadError",
    "LoadedImage",
    "check_dual_pixel_pair",
    "colorize_defocus_map",
    "defocus_map_figure",
    "defocus_output_paths",
    "export_defocus_map",
    "load_defocus_map_png16",
    "load_image",
    "save_defocus_map_npy",
    "save_defocus_map_png16",
    "save_image",
    "to_output",
    "to_tensor",
]
