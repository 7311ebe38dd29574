"""`DefocusDeblurPipeline`: single-image defocus deblurring (DefocusGAN generator) and, when the pipeline holds a
defocus-map net, defocus-map estimation from dual-pixel views. Large images run tile by tile."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput

from ..image_io import check_dual_pixel_pair, to_output, to_tensor
from ..image_io.conversion import is_single_image, to_pixels
from ..image_io.types import _quantize
from ..models.blur_kernel import LearnableBlurKernel
from ..models.deblur_net import DefocusDeblurNet
from ..models.defocus_net import DualPixelDefocusNet
from .dual_pixel_views import DualPixelConvention, gamma_encode, prepare_views, swap_symmetric
from .self_ensemble import dihedral_ensemble
from .tiling import count_tiles, tiled_apply, tiled_apply_array

OUTPUT_TYPES = ("pil", "np", "pt")


@dataclass
class DefocusDeblurPipelineOutput(BaseOutput):
    """
    Args:
        images: restored all-in-focus images: a list of PIL images (``output_type="pil"``), an array
            ``(B, H, W, 3)`` float32 in [0, 1] (``"np"``; uint8 / uint16 with ``output_bit_depth`` 8 / 16) or a tensor
            ``(B, 3, H, W)`` in [0, 1] (``"pt"``).
        defocus_maps: signed CoC radius in pixels, ``(B, H, W, 1)`` array (``"np"``/``"pil"``) or
            ``(B, 1, H, W)`` tensor (``"pt"``), when DP views were given; ``|map|`` is the paper's defocus map.
        bit_depths: bit depth of each input (8 or 16), so that 16-bit photos can be saved as 16-bit files.
        dual_pixel_convention: for DP input, the convention used
            (:class:`~defocusgan_hf.pipelines.dual_pixel_views.DualPixelConvention`
            as a dict: split direction and whether it was detected, the brightness ratio balanced, symmetric or not).
    """

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    defocus_maps: np.ndarray | torch.Tensor | None = None
    bit_depths: list[int] | None = None
    dual_pixel_convention: dict | None = None


class DefocusDeblurPipeline(DiffusionPipeline):
    """Defocus deblurring with DefocusGAN (Zhai et al., AAAI 2023).

    Components:
        deblur_net: :class:`DefocusDeblurNet`, the generator; at inference it takes the image alone. ``None`` makes a
            map-only pipeline (a stage-1 net alone, for :meth:`predict_defocus_map`).
        defocus_net: optional :class:`DualPixelDefocusNet` that estimates a signed CoC map from DP views.
        blur_kernel: optional :class:`LearnableBlurKernel` learned with ``defocus_net`` (stage 1): the PSFs that
            reblur an all-in-focus image by the map (``reblur``), and that deconvolution baselines use.
    """

    model_cpu_offload_seq = "defocus_net->deblur_net"
    _optional_components = ["deblur_net", "defocus_net", "blur_kernel"]

    def __init__(
        self,
        deblur_net: DefocusDeblurNet | None,
        defocus_net: DualPixelDefocusNet | None = None,
        blur_kernel: LearnableBlurKernel | None = None,
    ):
        super().__init__()
        if deblur_net is None and defocus_net is None:
            raise TypeError(
                "`deblur_net` must be a DefocusDeblurNet (or None in a map-only pipeline with `defocus_net`)."
            )
        if deblur_net is not None and not isinstance(deblur_net, DefocusDeblurNet):
            raise TypeError(f"`deblur_net` must be a DefocusDeblurNet or None, got {type(deblur_net).__name__}.")
        if defocus_net is not None and not isinstance(defocus_net, DualPixelDefocusNet):
            raise TypeError(f"`defocus_net` must be a DualPixelDefocusNet or None, got {type(defocus_net).__name__}.")
        if blur_kernel is not None and not isinstance(blur_kernel, LearnableBlurKernel):
            raise TypeError(f"`blur_kernel` must be a LearnableBlurKernel or None, got {type(blur_kernel).__name__}.")
        self.register_modules(deblur_net=deblur_net, defocus_net=defocus_net, blur_kernel=blur_kernel)
        self._autocast_dtype = None  # see enable_autocast

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str, **kwargs: Any) -> DefocusDeblurPipeline:
        """Load from a local pipeline folder or a Hub repo id (also from the Hub cache with ``HF_HUB_OFFLINE=1``)."""
        try:
            return super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        except (OSError, ValueError) as error:
            # diffusers raises ValueError for some missing paths; errors from an existing folder (a bad config, say)
            # are the user's to see as they are.
            if isinstance(error, ValueError) and Path(pretrained_model_name_or_path).is_dir():
                raise
            raise OSError(
                f"Could not load a DefocusDeblurPipeline from {str(pretrained_model_name_or_path)!r}: it is neither a "
                "pipeline folder (with model_index.json) nor a Hub repo that can be downloaded or found in the local "
                f"Hugging Face cache (offline mode makes the cache the only source). Cause: {error}"
            ) from error

    def enable_channels_last(self) -> DefocusDeblurPipeline:
        """Store the networks' weights in ``channels_last`` memory format, for which oneDNN has faster CPU
        convolutions (1.3-1.7x here for the generator, benchmarks/bench_app.py); outputs agree within 1e-5."""
        for net in (self.deblur_net, self.defocus_net):
            if net is not None:
                net.to(memory_format=torch.channels_last)
        return self

    def enable_autocast(self, dtype: torch.dtype | None = torch.bfloat16) -> DefocusDeblurPipeline:
        """Run the networks' convolutions under ``torch.autocast`` in ``dtype`` (``None`` turns it off), weights
        kept in float32. Unlike bf16 *weights* (``load_pipeline(..., dtype=torch.bfloat16)``), the input image and
        the residual added to it stay float32: bf16 has 8 bits of mantissa, so casting the image itself moves
        bright pixels by up to half a level of 255 and smooth gradients by ~5 dB (the do-no-harm battery), while
        autocast stays 63-74 dB from float32 on real frames with no brightness shift (docs/RESULTS.md)."""
        if dtype not in (None, torch.bfloat16, torch.float16):
            raise ValueError(f"`dtype` must be None, torch.bfloat16 or torch.float16, got {dtype!r}.")
        self._autocast_dtype = dtype
        return self

    def _autocast(self):
        dtype = getattr(self, "_autocast_dtype", None)
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)

    @staticmethod
    def _check_call(output_type: str, tile_size: int | None, tile_overlap: int, output_bit_depth=None) -> None:
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"`output_type` must be one of {OUTPUT_TYPES}, got {output_type!r}.")
        if output_bit_depth not in (None, 8, 16) or (output_bit_depth is not None and output_type != "np"):
            raise ValueError(
                f"`output_bit_depth` must be None, or 8 or 16 with output_type='np', got {output_bit_depth!r} "
                f"with {output_type!r}."
            )
        if tile_size is not None and (tile_size < 32 or not 0 <= tile_overlap < tile_size // 2):
            raise ValueError(
                f"`tile_size` must be None or >= 32 and `tile_overlap` in [0, tile_size / 2), "
                f"got {tile_size}, {tile_overlap}."
            )

    def _progress(self, total: int):
        bar = self.progress_bar(total=total)
        return bar, (lambda: bar.update(1))

    def _run_tiled(self, fn, inputs, out_channels, tile_size, tile_overlap):
        B, _, H, W = inputs[0].shape
        tiles = B * (count_tiles(H, W, tile_size, tile_overlap) if tile_size else 1)
        bar, step = self._progress(tiles)
        try:
            outputs = [
                tiled_apply(
                    fn, tuple(t[i : i + 1] for t in inputs), out_channels, tile_size, tile_overlap, self.device, step
                )
                for i in range(B)
            ]
        finally:
            bar.close()
        return torch.cat(outputs)

    def _run_tiled_array(self, fn, pixels: np.ndarray, out: np.ndarray, tile_size, tile_overlap) -> np.ndarray:
        """:func:`tiled_apply_array` with a progress bar: one ``(H, W, 3)`` image, the whole image never as float."""
        H, W = pixels.shape[:2]
        bar, step = self._progress(count_tiles(H, W, tile_size, tile_overlap) if tile_size else 1)
        try:
            return tiled_apply_array(fn, pixels, out, tile_size, tile_overlap, self.device, step)
        finally:
            bar.close()

    def _deblur(self, image: torch.Tensor) -> torch.Tensor:
        dtype = self.deblur_net.dtype
        with self._autocast():
            return self.deblur_net(image.to(dtype)).sample.float()

    def _need(self, component: str) -> None:
        if getattr(self, component) is None:
            raise ValueError(f"This pipeline has no `{component}`; load one that was saved with it.")

    def _map(
        self,
        left: torch.Tensor,
        right: torch.Tensor,
        tile_size: int | None,
        tile_overlap: int,
        split: str = "auto",
        balance_brightness: bool = True,
        symmetric: bool = True,
        linear: bool | None = None,
        combined: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, DualPixelConvention]:
        """Signed CoC maps ``(B, 1, H, W)`` (px) of DP views ``(B, 3, H, W)``, whole or tile by tile, and the
        convention used (tone, split direction, brightness balance; see
        :mod:`~defocusgan_hf.pipelines.dual_pixel_views`)."""
        check_dual_pixel_pair(left, right)
        if combined is not None and combined.shape != left.shape:
            raise ValueError(f"`combined` {tuple(combined.shape)} must have the views' shape {tuple(left.shape)}.")
        left, right, convention = prepare_views(left, right, split, balance_brightness, linear, combined)
        dtype = self.defocus_net.dtype
        net = self.defocus_net

        def predict(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            with self._autocast():
                forward = net(a.to(dtype), b.to(dtype)).defocus_map.float()
                if not symmetric:
                    return forward
                return swap_symmetric(forward, net(b.to(dtype), a.to(dtype)).defocus_map.float())

        coc = self._run_tiled(predict, (left, right), 1, tile_size, tile_overlap)
        convention.symmetric = symmetric
        return (coc.transpose(-2, -1) if convention.split == "vertical" else coc), convention

    @torch.inference_mode()
    def __call__(
        self,
        image: Any,
        tile_size: int | None = 512,
        tile_overlap: int = 64,
        output_type: str = "pil",
        return_dict: bool = True,
        self_ensemble: bool = False,
        output_bit_depth: int | None = None,
    ) -> DefocusDeblurPipelineOutput | tuple:
        """Deblur one image or a batch.

        One PIL image, LoadedImage or array stays in its own precision (uint8 / uint16) and is converted to float a
        tile at a time, each result written into the output as it comes: memory grows by the output (3 bytes per
        pixel for 8-bit output), not by full-size float32 copies. Batches and tensors go through float32 tensors.

        Args:
            image: a PIL image, a NumPy array ``(H, W[, 3|4|1])`` (uint8, uint16, or float in [0, 1]), a tensor
                ``(3, H, W)`` / ``(B, 3, H, W)`` in [0, 1], or a list of these of one size. Grayscale and RGBA are
                converted to RGB; 16-bit inputs keep their precision.
            tile_size: process images larger than this many pixels per side in overlapping tiles (bounded memory);
                ``None`` runs whole images.
            tile_overlap: pixels shared by neighbouring tiles, blended linearly.
            output_type: ``"pil"``, ``"np"`` or ``"pt"``.
            return_dict: return a :class:`DefocusDeblurPipelineOutput` rather than a tuple.
            self_ensemble: average the results for the 8 flips and quarter turns of each tile (x8 geometric
                self-ensemble): 8 times the time, for a small gain (docs/RESULTS.md).
            output_bit_depth: with ``output_type="np"``, 8 or 16 returns uint8 / uint16 samples (rounded, as
                :func:`~defocusgan_hf.image_io.save_image` writes them) instead of float32; None keeps float32.
        """
        # 1. Check inputs
        self._need("deblur_net")
        self._check_call(output_type, tile_size, tile_overlap, output_bit_depth)
        deblur = partial(dihedral_ensemble, self._deblur) if self_ensemble else self._deblur
        if is_single_image(image) and output_type != "pt":
            # 2-4. One image: its own samples in, each tile converted, predicted and written out in turn
            pixels, depth = to_pixels(image)
            bits = 8 if output_type == "pil" else output_bit_depth
            dtype = {None: np.float32, 8: np.uint8, 16: np.uint16}[bits]
            out = self._run_tiled_array(deblur, pixels, np.empty(pixels.shape, dtype), tile_size, tile_overlap)
            images = [PIL.Image.fromarray(out)] if output_type == "pil" else out[None]
            bit_depths = [depth]
        else:
            # 2. Preprocess to (B, 3, H, W) float32 in [0, 1]
            blurry, bit_depths = to_tensor(image)
            # 3. Predict, whole or tiled
            restored = self._run_tiled(deblur, (blurry,), 3, tile_size, tile_overlap)
            # 4. Postprocess
            images = to_output(restored, output_type)
            if output_bit_depth is not None:
                images = _quantize(images, output_bit_depth)
        if not return_dict:
            return (images,)
        return DefocusDeblurPipelineOutput(images=images, bit_depths=bit_depths)

    @torch.inference_mode()
    def estimate_defocus_map(
        self,
        left: Any,
        right: Any,
        tile_size: int | None = 512,
        tile_overlap: int = 64,
        output_type: str = "np",
        return_dict: bool = True,
        split: str = "auto",
        balance_brightness: bool = True,
        symmetric: bool = True,
        linear: bool | None = None,
    ) -> DefocusDeblurPipelineOutput | tuple:
        """Estimate the signed CoC map of a DP capture and deblur its combined view ``(left + right) / 2``.

        Args:
            left, right: the two DP views, in any form ``__call__`` accepts (single-channel views are repeated to
                RGB), of the same size.
            split: ``"auto"`` (default: detected from the views' disparity), ``"horizontal"`` (left/right views, e.g.
                DSLRs) or ``"vertical"`` (top/bottom views, e.g. many phones; the top view plays "left").
            balance_brightness: divide out the smooth brightness ratio between the views (per-view vignetting).
            symmetric: take both view orders, so that swapping the views flips the map's sign exactly (twice the
                stage-1 time; :func:`~defocusgan_hf.pipelines.dual_pixel_views.swap_symmetric`).
            linear: whether the views are linear light (raw DP data): they are then gamma-encoded (``x ** (1 / 2.2)``)
                before the net, and the combined view is encoded after averaging. ``None`` (default): taken as
                gamma-encoded, like photos (nothing here to detect it from; :meth:`predict_defocus_map` can, given
                the stored combined image).
        Returns:
            ``images`` (the all-in-focus image), ``defocus_maps`` (signed CoC radius in pixels) and
            ``dual_pixel_convention`` (what was detected and done).
        """
        self._need("defocus_net")
        self._need("deblur_net")
        self._check_call(output_type, tile_size, tile_overlap)
        left_t, bit_depths = to_tensor(left)
        right_t, _ = to_tensor(right)
        coc, convention = self._map(
            left_t, right_t, tile_size, tile_overlap, split, balance_brightness, symmetric, linear
        )
        combined = (left_t + right_t) / 2  # averaged in the views' own tone: linear light adds, encoded values do not
        combined = gamma_encode(combined) if convention.linear else combined
        restored = self._run_tiled(self._deblur, (combined,), 3, tile_size, tile_overlap)
        images = to_output(restored, output_type)
        maps = coc if output_type == "pt" else coc.permute(0, 2, 3, 1).cpu().numpy()
        if not return_dict:
            return (images, maps)
        return DefocusDeblurPipelineOutput(
            images=images, defocus_maps=maps, bit_depths=bit_depths, dual_pixel_convention=convention.to_dict()
        )

    @torch.inference_mode()
    def predict_defocus_map(
        self,
        left: Any,
        right: Any,
        tile_size: int | None = 512,
        tile_overlap: int = 64,
        output_type: str = "np",
        split: str = "auto",
        balance_brightness: bool = True,
        symmetric: bool = True,
        return_convention: bool = False,
        linear: bool | None = None,
        combined: Any = None,
    ) -> np.ndarray | torch.Tensor | tuple:
        """The signed CoC map alone (the stage-1 net, no deblurring; works in a map-only pipeline).

        Args:
            left, right: the two DP views, in any form ``__call__`` accepts, of the same size.
            output_type: ``"np"`` (or ``"pil"``) for an array ``(B, H, W, 1)``, ``"pt"`` for a tensor ``(B, 1, H, W)``.
            split: ``"auto"`` (default: detected from the views' disparity), ``"horizontal"`` (left/right views, e.g.
                DSLRs) or ``"vertical"`` (top/bottom views, e.g. many phones; the top view plays "left").
            balance_brightness: divide out the smooth brightness ratio between the views (per-view vignetting).
            symmetric: take both view orders, so that swapping the views flips the map's sign exactly (twice the
                stage-1 time; :func:`~defocusgan_hf.pipelines.dual_pixel_views.swap_symmetric`).
            return_convention: also return the
                :class:`~defocusgan_hf.pipelines.dual_pixel_views.DualPixelConvention` used.
            linear: whether the views are linear light (raw DP data), then gamma-encoded (``x ** (1 / 2.2)``) before
                the net; ``False``: gamma-encoded, like photos; ``None`` (default): detected from ``combined`` when
                it is given (:func:`~defocusgan_hf.pipelines.dual_pixel_views.detect_linear`), else gamma-encoded.
            combined: the stored combined image of the views (same size, any form ``__call__`` accepts), only read to
                detect ``linear``.
        Returns:
            signed CoC radius in pixels (``> 0`` behind the focal plane, ``< 0`` in front).
        """
        self._need("defocus_net")
        self._check_call(output_type, tile_size, tile_overlap)
        left_t, right_t = to_tensor(left)[0], to_tensor(right)[0]
        combined_t = None if combined is None else to_tensor(combined)[0]
        coc, convention = self._map(
            left_t, right_t, tile_size, tile_overlap, split, balance_brightness, symmetric, linear, combined_t
        )
        coc = coc if output_type == "pt" else coc.permute(0, 2, 3, 1).cpu().numpy()
        return (coc, convention) if return_convention else coc
