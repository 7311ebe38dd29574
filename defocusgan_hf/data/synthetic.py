"""Synthetic dual-pixel captures from sharp images: the renderer, and datasets for CPU workers or the GPU.

From a batch of sharp images the renderer makes everything DPDD has plus a ground-truth CoC map:

- ``sharp``: ``(B, 3, H, W)`` all-in-focus target, sRGB in [0, 1] (the layers composited without blur);
- ``left``, ``right``: ``(B, 3, H, W)`` the two DP views in [0, 1];
- ``blurred``: ``(B, 3, H, W)`` the combined DP image, ``(left + right) / 2`` before noise and JPEG;
- ``coc``: ``(B, 1, H, W)`` float32 signed CoC radius in pixels, ``|coc| <= max_coc``; ``coc > 0`` behind the
  focal plane (far), ``coc < 0`` in front of it (near).

Pipeline per scene (all seeded by one ``torch.Generator``): draw a layered depth layout (:mod:`.scene`), give each
layer content (layer 0: the scene's own image; others: an image of the pool, flipped or rotated), linearise
(``x ** gamma``), render the DP views with occlusion (:mod:`.render`, PSFs of :mod:`.psf`), then sensor effects
(:mod:`.sensor`): exposure, opposite DP vignetting, Poisson-Gaussian noise per view (the combined image is the
mean of the two noisy views, as the sensor sums its photodiodes), clipping, ``x ** (1 / gamma)`` and JPEG-like
compression (each of blurred / left / right). The sharp target gets the same exposure and gamma, no noise.

Two ways to use it:

- on the accelerator, inside the training loop: a DataLoader of cheap sharp crops
  (:class:`~.datasets.SharpImageDataset`) and :class:`DualPixelRenderer` called on each batch on
  ``accelerator.device``;
- as a plain map-style dataset (:class:`~.datasets.SyntheticDualPixelDataset`), deterministic per ``(seed, index)``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math

import torch

from .config import DualPixelConfig
from .highlights import in_focus_highlight_layer
from .psf import DualPixelPSFBank
from .psf_families import FamilyPSFBank, PSFShape, sample_psf_shape
from .render import composite_sharp, render_layers, render_layers_with_banks
from .scene import DualPixelScene, sample_scene
from .sensor import (
    dual_pixel_vignetting,
    jpeg_compress,
    log_uniform,
    phone_processing,
    poisson_gaussian_noise,
    uniform,
)


def _rand(generator: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=generator.device)


def child_generator(generator: torch.Generator, salt: str) -> torch.Generator:
    """A generator on ``generator``'s device seeded from its current state and ``salt``, without drawing from it:
    the opt-in changes draw from such streams, so switching one on leaves every other draw of a sample as it was."""
    state = generator.get_state().cpu().numpy().tobytes()
    seed = int.from_bytes(hashlib.sha256(state + salt.encode()).digest()[:8], "little") >> 1
    return torch.Generator(device=generator.device).manual_seed(seed)


def _energy_matched_scale(
    base: tuple[torch.Tensor, torch.Tensor], excess: tuple[torch.Tensor, torch.Tensor], target: torch.Tensor, exposure
) -> torch.Tensor:
    """``(B, 1, 1, 1)`` scale ``k`` in [0, 1] of the blurred above-white light such that the clipped combined image
    ``clip(((L + k Le) + (R + k Re)) / 2 * exposure)`` carries as much light as the clipped target (bisection)."""

    def light(image: torch.Tensor) -> torch.Tensor:
        return (image * exposure).clamp(0, 1).flatten(1).sum(dim=1)

    combined, spread = (base[0] + base[1]) / 2, (excess[0] + excess[1]) / 2
    wanted = light(target)
    low, high = torch.zeros_like(wanted), torch.ones_like(wanted)
    for _ in range(20):
        k = (low + high) / 2
        brighter = light(combined + k.view(-1, 1, 1, 1) * spread) > wanted
        low, high = torch.where(brighter, low, k), torch.where(brighter, k, high)
    k = torch.where(light(combined + spread) <= wanted, torch.ones_like(low), low)  # never brighter: keep it all
    return k.view(-1, 1, 1, 1)


def _render_channels(
    linear: torch.Tensor, alpha: torch.Tensor, coc: torch.Tensor, banks: list, scales: tuple[float, ...] | None
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """:func:`render_layers_with_banks` (one ``(left, right)`` per bank, each ``(B, 3, H, W)``), or, with
    ``scales``, each colour channel with its CoC scaled (axial chromatic aberration)."""
    if scales is None:
        return render_layers_with_banks(linear, alpha, coc, banks)
    scales = scales * (linear.shape[2] // len(scales))  # the same scales for stacked colour triplets
    channels = [
        render_layers_with_banks(linear[:, :, ch : ch + 1], alpha, coc * k, banks) for ch, k in enumerate(scales)
    ]
    return [
        (torch.cat([c[j][0] for c in channels], dim=1), torch.cat([c[j][1] for c in channels], dim=1))
        for j in range(len(banks))
    ]


CAT_EYE_AXES = 4  # cat-eye orientations blended across the frame (every 45°)


def field_weights(height: int, width: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the PSF turns into a cat eye: ``r²`` ``(H, W)`` (0 at the centre, 1 in the corners) and ``(4, H, W)``
    weights of the cat-eye axes at 0°, 45°, 90°, 135° (summing to 1; linear in the angle of the radial direction)."""
    y = torch.arange(height, device=device) + 0.5 - height / 2  # pixels from the centre
    x = torch.arange(width, device=device) + 0.5 - width / 2
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    r2 = (xx**2 + yy**2) / ((height / 2) ** 2 + (width / 2) ** 2)
    angle = torch.atan2(yy, xx)
    axes = torch.arange(CAT_EYE_AXES, device=device).view(-1, 1, 1) * math.pi / CAT_EYE_AXES
    distance = torch.remainder(angle - axes + math.pi / 2, math.pi) - math.pi / 2  # angle to each axis, mod 180°
    weights = (1 - distance.abs() / (math.pi / CAT_EYE_AXES)).clamp_min(0)
    return r2, weights / weights.sum(dim=0, keepdim=True)


def _cat_eye_banks(shape: PSFShape, overlap: float, bank_of) -> list:
    """The banks of the cat-eye PSFs at :data:`CAT_EYE_AXES` orientations that a field-varying rendering blends in
    towards the frame's corners (the centre PSF's edge, a Gaussian's taken as 0.1)."""
    edge = shape.edge if shape.family != "gaussian" else 0.1
    return [
        bank_of(PSFShape("cat_eye", edge=edge, rotation=k * math.pi / CAT_EYE_AXES, overlap=overlap))
        for k in range(CAT_EYE_AXES)
    ]


def _field_varying(centre, cat_eyes) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend the centre rendering ``(left, right)`` into the cat-eye renderings (one per axis of
    :func:`field_weights`) towards the frame's corners. Blending renderings with a smooth weight is a spatially
    varying PSF up to the weight's change over one PSF (small: the weight varies over the whole frame)."""
    _, _, H, W = centre[0].shape
    r2, weights = field_weights(H, W, centre[0].device)
    left, right = centre[0] * (1 - r2), centre[1] * (1 - r2)
    for k, (view_left, view_right) in enumerate(cat_eyes):
        left, right = left + view_left * r2 * weights[k], right + view_right * r2 * weights[k]
    return left, right


class DualPixelRenderer:
    """Callable that turns a batch of sharp images into synthetic DP captures, on the images' device.

    ``renderer(sharp, generator)`` with ``sharp`` ``(B, 3, H, W)`` sRGB in [0, 1] returns the dict described in
    the module docstring. All randomness comes from ``generator`` (use one on the images' device for speed; a CPU
    generator also works). Objects take their content from the other images of the batch (flipped or rotated),
    or, when given, from ``pool`` ``(B, M, 3, H, W)``: per-scene extra images.
    """

    def __init__(self, config: DualPixelConfig | None = None):
        self.config = config or DualPixelConfig()
        c = self.config
        self.bank = DualPixelPSFBank(c.max_coc, c.coc_step, c.split_softness, c.light_falloff)

    def sample_scene(
        self,
        batch_size: int,
        height: int,
        width: int,
        generator: torch.Generator,
        device=None,
        histogram_generator: torch.Generator | None = None,
    ) -> DualPixelScene:
        c = self.config
        return sample_scene(
            batch_size,
            height,
            width,
            generator,
            c.max_coc,
            c.num_layers,
            c.aperture_range,
            c.in_focus_prob,
            device,
            coc_histogram=c.coc_histogram,
            histogram_generator=histogram_generator,
        )

    def _layer_contents(
        self, sharp: torch.Tensor, pool: torch.Tensor | None, num_layers: int, used: int, generator: torch.Generator
    ) -> torch.Tensor:
        """``(B, used, 3, H, W)``: layer 0 is each scene's own image, the others come from the pool, flipped/rotated.

        Random draws are made for all ``num_layers`` layers, so the stream does not depend on ``used``."""
        B, _, H, W = sharp.shape
        if not self.config.mix_layer_content:
            return sharp[:, None].expand(B, used, 3, H, W)
        candidates = sharp if pool is None else pool.flatten(0, 1)
        per_scene = B if pool is None else pool.shape[1]
        draws = _rand(generator, B, num_layers, 4).tolist()
        layers = [sharp]
        for layer in range(1, used):
            images = []
            for b in range(B):
                choice, flip_x, flip_y, transpose = draws[b][layer]
                index = min(int(choice * per_scene), per_scene - 1) + (0 if pool is None else b * per_scene)
                image = candidates[index]  # one of the 8 flips/rotations (no shifts: they would leave seams)
                image = image.flip(-1) if flip_x < 0.5 else image
                image = image.flip(-2) if flip_y < 0.5 else image
                images.append(image.transpose(-2, -1) if transpose < 0.5 and H == W else image)
            layers.append(torch.stack(images))
        return torch.stack(layers, dim=1)

    def _focus_variety(self, scene: DualPixelScene, generator: torch.Generator) -> DualPixelScene:
        """Scenes all in focus (``all_in_focus_prob``) or with the background in focus
        (``background_in_focus_prob``)."""
        c = self.config
        if c.all_in_focus_prob <= 0 and c.background_in_focus_prob <= 0:
            return scene
        B, device = scene.coc.shape[0], scene.coc.device
        all_sharp = (_rand(generator, B) < c.all_in_focus_prob).to(device).view(B, 1, 1, 1, 1)
        background = (_rand(generator, B) < c.background_in_focus_prob).to(device).view(B, 1, 1, 1)
        coc = scene.coc.clone()
        coc[:, 0] = torch.where(background, torch.zeros_like(coc[:, 0]), coc[:, 0])
        coc = torch.where(all_sharp, torch.zeros_like(coc), coc)
        return dataclasses.replace(scene, coc=coc)

    def _render(
        self, linear: torch.Tensor, alpha: torch.Tensor, coc: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """DP views with the fixed bank, or per sample with a drawn PSF family and DP masks."""
        c = self.config
        varied_masks = c.split_softness_range or c.light_falloff_range or c.split_offset_range != (0.0, 0.0)
        if not c.psf_families and not varied_masks and c.vertical_split_prob == 0:
            return render_layers(linear, alpha, coc, self.bank)
        views = []
        for b in range(linear.shape[0]):
            shape = sample_psf_shape(generator, c.psf_families) if c.psf_families else PSFShape("eq3")
            softness = uniform(generator, *(c.split_softness_range or (c.split_softness,) * 2), 1).item()
            falloff = uniform(generator, *(c.light_falloff_range or (c.light_falloff,) * 2), 1).item()
            offset = uniform(generator, *c.split_offset_range, 1).item() if c.split_offset_range != (0.0, 0.0) else 0.0
            vertical = c.vertical_split_prob > 0 and bool(_rand(generator, 1) < c.vertical_split_prob)
            # Draws for the optional effects are made whether or not they are on, so the stream stays the same.
            chromatic, scale, field, overlap = _rand(generator, 4).tolist()
            scales = None
            if chromatic < c.chromatic_prob and c.chromatic_range > 0:
                s = c.chromatic_range * (2 * scale - 1)
                scales = (1 + s, 1.0, 1 - s)
            masks = dict(softness=softness, falloff=falloff, offset=offset, vertical=vertical)
            bank_of = functools.partial(FamilyPSFBank, max_coc=c.max_coc, step=c.coc_step, **masks)
            sample = linear[b : b + 1], alpha[b : b + 1], coc[b : b + 1]
            field_varying = field < c.field_varying_prob
            banks = [bank_of(shape)] + (_cat_eye_banks(shape, 0.3 + 0.6 * overlap, bank_of) if field_varying else [])
            rendered = _render_channels(*sample, banks, scales)  # the banks share the sub-layers' forward FFTs
            views.append(_field_varying(rendered[0], rendered[1:]) if field_varying else rendered[0])
        return torch.cat([v[0] for v in views]), torch.cat([v[1] for v in views])

    @torch.no_grad()
    def __call__(
        self, sharp: torch.Tensor, generator: torch.Generator, pool: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        if sharp.dim() != 4 or sharp.shape[1] != 3:
            raise ValueError(f"`sharp` must be (B, 3, H, W) in [0, 1], got {tuple(sharp.shape)}.")
        if pool is not None and (
            pool.dim() != 5 or pool.shape[0] != sharp.shape[0] or pool.shape[2:] != sharp.shape[1:]
        ):
            raise ValueError(
                f"`pool` must be (B, M, 3, H, W) matching `sharp` {tuple(sharp.shape)}, got {tuple(pool.shape)}."
            )
        c, g = self.config, generator
        B, _, H, W = sharp.shape
        device, dtype = sharp.device, torch.float32
        sharp = sharp.to(dtype)
        pool = pool.to(device, dtype) if pool is not None else None
        # Opt-in changes draw from their own streams (seeded from g's state here), leaving g's draws as they were.
        streams = {
            name: child_generator(g, name)
            for name, on in (
                ("coc_histogram", c.coc_histogram is not None),
                ("in_focus_highlights", c.in_focus_highlight_prob > 0),
                ("phone_processing", c.phone_processing_prob > 0),
            )
            if on
        }
        scene = self.sample_scene(B, H, W, g, device, histogram_generator=streams.get("coc_histogram"))
        scene = self._focus_variety(scene, g)
        # Layers no scene of the batch uses (alpha 0 everywhere) are dropped: the result is the same, only cheaper.
        used = int(scene.num_layers.max())
        alpha, layer_coc = scene.alpha[:, :used], scene.coc[:, :used]
        contents = self._layer_contents(sharp, pool, scene.alpha.shape[1], used, g)
        grey = None
        if c.grey_prob > 0:
            grey = (_rand(g, B) < c.grey_prob).to(device).view(B, 1, 1, 1)
            contents = torch.where(grey[:, None], contents.mean(dim=2, keepdim=True).expand_as(contents), contents)

        gamma = uniform(g, *c.gamma_range, B, device).view(B, 1, 1, 1)
        exposure = log_uniform(g, *c.exposure_range, B, device).view(B, 1, 1, 1)
        linear = contents.clamp(0, 1) ** gamma[:, None]
        unboosted = linear
        if c.highlight_prob > 0:
            boosted = (_rand(g, B) < c.highlight_prob).to(device).view(B, 1, 1, 1, 1)
            gain = log_uniform(g, *c.highlight_gain_range, B, device).view(B, 1, 1, 1, 1)
            bright = ((contents.mean(dim=2, keepdim=True) - 0.85) / 0.1).clamp(0, 1)
            linear = torch.where(boosted, linear * (1 + (gain - 1) * bright), linear)
        split = c.energy_consistent_highlights and c.highlight_prob > 0
        if split:  # the scene without the gain and the gain's extra light, rendered side by side (blur is linear)
            views = self._render(torch.cat([unboosted, linear - unboosted], dim=2), alpha, layer_coc, g)
            (left, spread_left), (right, spread_right) = (v.split(3, dim=1) for v in views)
        else:
            left, right = self._render(linear, alpha, layer_coc, g)
        target = composite_sharp(linear, alpha)
        coc = scene.composite_coc()
        if "in_focus_highlights" in streams:  # on top of everything, CoC 0, after the highlight gain
            hg = streams["in_focus_highlights"]
            chosen = (_rand(hg, B) < c.in_focus_highlight_prob).to(device).view(B, 1, 1, 1)
            premultiplied, cover = in_focus_highlight_layer(hg, B, H, W, gamma.view(B), device)
            premultiplied, cover = premultiplied * chosen, cover * chosen
            if grey is not None:
                premultiplied = torch.where(
                    grey, premultiplied.mean(dim=1, keepdim=True).expand(-1, 3, -1, -1), premultiplied
                )
            left, right, target = (premultiplied + (1 - cover) * x for x in (left, right, target))
            if split:
                spread_left, spread_right = (1 - cover) * spread_left, (1 - cover) * spread_right
            coc = (1 - cover) * coc
        if split:
            k = _energy_matched_scale((left, right), (spread_left, spread_right), target, exposure)
            left, right = left + k * spread_left, right + k * spread_right

        # Sensor: exposure, DP vignetting, noise on each view; the combined image is the photodiodes' mean.
        vignetting = uniform(g, *c.vignetting_range, B, device)
        gain_left, gain_right = dual_pixel_vignetting(W, vignetting, device)
        left, right = left * exposure * gain_left, right * exposure * gain_right
        noisy = (_rand(g, B) < c.noise_prob).to(device).view(B, 1, 1, 1)
        shot = log_uniform(g, *c.shot_noise_range, B, device)
        read = log_uniform(g, *c.read_noise_range, B, device)
        if c.noise_prob > 0:
            left = torch.where(noisy, poisson_gaussian_noise(left, shot, read, g), left)
            right = torch.where(noisy, poisson_gaussian_noise(right, shot, read, g), right)
        if grey is not None:  # a grey scene's noise is grey too (as after a camera's chroma denoising)
            left = torch.where(grey, left.mean(dim=1, keepdim=True).expand_as(left), left)
            right = torch.where(grey, right.mean(dim=1, keepdim=True).expand_as(right), right)
        blurred = (left + right) / 2

        tone = uniform(g, *c.tone_curve_range, B, device).view(B, 1, 1, 1) if c.tone_curve_range[1] > 0 else None

        def encode(image: torch.Tensor) -> torch.Tensor:
            encoded = image.clamp(0, 1) ** (1 / gamma)
            if tone is None:
                return encoded
            return encoded + tone * (encoded * encoded * (3 - 2 * encoded) - encoded)  # towards smoothstep: an S-curve

        out = {
            "sharp": encode(target * exposure),
            "blurred": encode(blurred),
            "left": encode(left),
            "right": encode(right),
        }
        compressed = (_rand(g, B) < c.jpeg_prob).to(device)
        quality = uniform(g, *c.jpeg_quality_range, B, device)
        if "phone_processing" in streams:  # the combined input only, before JPEG (as a phone pipeline does)
            out["blurred"] = phone_processing(
                out["blurred"],
                streams["phone_processing"],
                c.phone_processing_prob,
                c.phone_sharpen_radius_range,
                c.phone_sharpen_amount_range,
                c.phone_denoise_strength_range,
            )
        if bool(compressed.any()):
            mask = compressed.view(B, 1, 1, 1)
            for key in ("blurred", "left", "right"):
                out[key] = torch.where(mask, jpeg_compress(out[key], quality), out[key])
        if c.eight_bit_samples:  # what every photo file holds: samples on 1/255 steps (no random draw)
            out = {key: (value * 255).round() / 255 for key, value in out.items()}
        out["coc"] = coc.clamp(-c.max_coc, c.max_coc)
        return {key: value.contiguous() for key, value in out.items()}


def render_dual_pixel_batch(
    sharp: torch.Tensor,
    generator: torch.Generator,
    config: DualPixelConfig | None = None,
    pool: torch.Tensor | None = None,
) -> dict:
    """One-shot :class:`DualPixelRenderer` call (the PSF bank is rebuilt; keep a renderer for repeated use)."""
    return DualPixelRenderer(config)(sharp, generator, pool)


__all__ = [
    "DualPixelConfig",
    "DualPixelRenderer",
    "child_generator",
    "render_dual_pixel_batch",
]
