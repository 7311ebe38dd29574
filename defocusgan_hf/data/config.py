"""The synthetic data distribution as data: :class:`DualPixelConfig` (optics, scenes, sensor, and the variety that
keeps the data from mirroring the model), with :meth:`DualPixelConfig.varied`, the training default."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .psf import DEFAULT_LIGHT_FALLOFF, DEFAULT_SPLIT_SOFTNESS
from .psf_families import PSF_FAMILIES

DATA_CONFIGS = ("eq3", "varied")
"""Names of the engines :meth:`DualPixelConfig.named` builds (the ``--data_config`` flags' choices)."""

REAL_COC_SCALES: tuple[float, ...] = (3.23, 5.16, 3.26, 2.08, 1.61, 3.92, 3.02)
"""95th-percentile |CoC| in px of the shipped stage-1 net's maps on the real DP views of DPDD GIF scenes 00-06 (the
scenes kept for choosing; half DPDD's resolution), measured on 2026-12-06 with ``predict_defocus_map`` (symmetric,
tiles of 512). The Pixel 4 scenes were measured too (10.9-12.9 px) but left out: the stage-1 net does not rank
depth there yet (issue 26) and a phone's DP blur is smaller than that."""

REAL_COC_HISTOGRAM: tuple[tuple[float, float], ...] | None = None
"""``(radius_px, weight)`` bins of the CoC scale of real captures, for ``with_change("real_coc_distribution")``:
:data:`REAL_COC_SCALES` at the GIF frames' half resolution and doubled (DPDD's full resolution), binned by
:func:`coc_histogram_from_values` (set below, once that function is defined)."""

ENGINE_CHANGES: dict[str, dict] = {
    "in_focus_highlights": dict(in_focus_highlight_prob=0.3),
    "energy_consistent_highlights": dict(energy_consistent_highlights=True),
    "phone_processing": dict(phone_processing_prob=0.3),
    "cuhk_in_focus_sources": dict(cuhk_in_focus_root="../shared/real/cuhk"),
    "real_coc_distribution": dict(coc_histogram=REAL_COC_HISTOGRAM),
    "more_in_focus_scenes": dict(all_in_focus_prob=0.3),
    "more_cuhk_sources": dict(cuhk_in_focus_root="../shared/real/cuhk", cuhk_in_focus_weight=0.5),
    "fine_pattern_sources": dict(fine_pattern_weight=0.15),
    "eight_bit_samples": dict(eight_bit_samples=True),
    "phone_dual_pixel": dict(aperture_range=(1.0, 8.0), split_softness_range=(0.3, 0.8), vignetting_range=(0.1, 0.3)),
}
"""Named, opt-in changes of the data engine for equal-budget experiments (issue "Real blur, round 2"): each is a
set of :class:`DualPixelConfig` fields, off in the class defaults and in :meth:`DualPixelConfig.varied` (except
``more_in_focus_scenes``, which raises varied's share of all-in-focus scenes from 0.12 to 0.3: more samples whose
target is the input, and ``phone_dual_pixel``, which retunes three ranges for a phone's DP sensor: CoC scales of
1-8 px, a soft aperture split (``split_softness_range`` 0.3-0.8) and strong opposite per-view vignetting (0.1-0.3),
as in the Pixel 4 captures), applied with :meth:`DualPixelConfig.with_change`
(``DualPixelConfig.varied().with_change("phone_processing")``)."""


@dataclass(frozen=True)
class DualPixelConfig:
    """Everything that defines the synthetic data distribution (JSON-serialisable with ``to_dict``).

    Optics:
        max_coc: largest |CoC| radius in pixels (the paper's 25).
        coc_step: sub-layer spacing of the CoC in pixels (<= 1; linear interpolation between sub-layers).
        split_softness, light_falloff: shape of the DP half-aperture masks (see :mod:`.psf`).
    Scene:
        num_layers: inclusive range of layers per scene, background included.
        aperture_range: CoC scale ``A`` in pixels, log-uniform (``coc = A * (rho_focus - rho)``, clipped).
        in_focus_prob: probability that the focal plane passes through a layer.
        mix_layer_content: give objects other images' content (``False``: every layer shows the same image, so the
            sharp target equals the input before photometric changes).
    Sensor (set ``noise_prob = jpeg_prob = 0``, ``gamma_range = exposure_range = (1, 1)`` and
    ``vignetting_range = (0, 0)`` for a clean optical rendering; see :meth:`clean`):
        gamma_range: the sRGB-like curve ``x ** gamma`` used to linearise (uniform).
        exposure_range: gain on linear light (log-uniform); values above 1 saturate highlights.
        vignetting_range: opposite horizontal fall-off of the DP views, ``1 -/+ s x`` (uniform ``s``).
        noise_prob: probability of Poisson-Gaussian noise; ``shot_noise_range`` (variance per unit signal) and
            ``read_noise_range`` (standard deviation) are log-uniform.
        jpeg_prob, jpeg_quality_range: probability and quality range (uniform) of JPEG-like compression.
    Variety that keeps the data from mirroring the model (all off by default: the first engine; on in
    :meth:`varied`, which training uses by default):
        psf_families: PSF families drawn per sample (:mod:`.psf_families`); empty: the paper's Eq. 3 kernel only.
        split_softness_range, light_falloff_range: per-sample DP half-aperture masks (uniform; ``None``: fixed).
        highlight_prob, highlight_gain_range: probability that bright pixels (sRGB luminance above 0.85) become
            brighter than white in linear light, by a gain drawn log-uniform, so that they turn into bokeh discs
            once blurred and clipped, as in real photos.
        grey_prob: probability of a grey scene (R = G = B in every layer).
        all_in_focus_prob: probability that every layer is in focus (nothing to undo: the identity is the target).
        background_in_focus_prob: probability that the background layer is in focus (a mostly sharp photo).
        tone_curve_range: strength of a random S-shaped tone curve after the gamma (uniform; 0 = none).
        split_offset_range: per-sample off-centre DP split (unequal half-apertures), a fraction of the radius.
        vertical_split_prob: probability that the aperture is split top/bottom (the first view seeing the top
            half), as on many phones; the pipeline detects and transposes such pairs, so training keeps it 0.
        chromatic_prob, chromatic_range: probability of axial chromatic aberration, and its size: red's CoC is
            scaled by ``1 + s`` and blue's by ``1 - s``, ``s`` uniform in ``[-chromatic_range, chromatic_range]``
            (green unchanged). A scale, not an offset, so a CoC of 0 stays 0 in every channel: in-focus pixels are
            sharp in all three and the identity target there stays exact.
        field_varying_prob: probability that the PSF changes across the frame, as mechanical vignetting makes it:
            the sample's drawn PSF at the centre turns into cat-eye shapes towards the corners, each narrow along
            its radial direction (weight ``r²``, ``r`` the distance from the centre over the half-diagonal).
    Opt-in changes (off in the class defaults and in :meth:`varied`; named sets of them in ``ENGINE_CHANGES``):
        in_focus_highlight_prob: probability of bright objects left **in focus** (CoC 0) on top of the scene:
            saturated discs, lamp shapes (tubes, rounded panels) and clusters of small point lights, 1 to 4 times
            brighter than white in linear light, identical in the input and the target (sensor effects aside) and
            never turned into bokeh by ``highlight_prob``: a bright disc is not always a blurred one.
        energy_consistent_highlights: the above-white light of ``highlight_prob`` reaches the input only as far
            as the target keeps it: per sample, the blurred excess is scaled so that the clipped blurred frame
            carries the clipped target's light (linear light, before noise). Off: the target clips the excess
            away while the input spreads it, so the input is brighter.
        phone_processing_prob: probability of phone-style processing of the combined input after blur and noise
            (before JPEG; never the target, the DP views or the CoC): unsharp-mask sharpening (Gaussian radius
            ``phone_sharpen_radius_range`` px, amount ``phone_sharpen_amount_range``), a denoising smear (a 5x5
            bilateral blend of strength ``phone_denoise_strength_range``), or both (one in three each).
        cuhk_in_focus_root: folder of the CUHK blur-detection photos (``images/``, ``blur_masks/``); given, the
            datasets draw ``cuhk_in_focus_weight`` of their sharp crops from the in-focus parts of photos 41-204
            (:class:`~defocusgan_hf.data.sources.CUHKInFocusSource`; photos 1-40 are the in-focus test, never read).
        fine_pattern_weight: share of sharp crops drawn from dead leaves whose gratings reach 0.5 cycles/px and
            whose two-colour leaves are checkerboards of 2-8 px cells (``DeadLeavesSource(fine_patterns=True)``):
            the finest periodic detail a sensor records, in focus and blurred alike.
        eight_bit_samples: round the rendered target, input and DP views to 8-bit levels (after JPEG), as every
            photo file is: the quantisation steps of smooth in-focus shading are then part of what is left alone.
        coc_histogram: ``(radius_px, weight)`` bins from which the CoC scale ``A`` (px) is drawn instead of the
            log-uniform ``aperture_range``: a piecewise-uniform density, bin edges halfway between the radii
            (:func:`coc_histogram_from_values` builds one from |CoC| values).
    """

    max_coc: float = 25.0
    coc_step: float = 1.0
    split_softness: float = DEFAULT_SPLIT_SOFTNESS
    light_falloff: float = DEFAULT_LIGHT_FALLOFF
    num_layers: tuple[int, int] = (2, 5)
    aperture_range: tuple[float, float] = (2.0, 60.0)
    in_focus_prob: float = 0.6
    mix_layer_content: bool = True
    gamma_range: tuple[float, float] = (1.8, 2.6)
    exposure_range: tuple[float, float] = (0.7, 1.3)
    vignetting_range: tuple[float, float] = (0.0, 0.1)
    noise_prob: float = 0.8
    shot_noise_range: tuple[float, float] = (1e-4, 1e-2)
    read_noise_range: tuple[float, float] = (5e-4, 1e-2)
    jpeg_prob: float = 0.3
    jpeg_quality_range: tuple[float, float] = (60.0, 95.0)
    psf_families: tuple[str, ...] = ()
    split_softness_range: tuple[float, float] | None = None
    light_falloff_range: tuple[float, float] | None = None
    highlight_prob: float = 0.0
    highlight_gain_range: tuple[float, float] = (1.0, 1.0)
    grey_prob: float = 0.0
    all_in_focus_prob: float = 0.0
    background_in_focus_prob: float = 0.0
    tone_curve_range: tuple[float, float] = (0.0, 0.0)
    split_offset_range: tuple[float, float] = (0.0, 0.0)
    vertical_split_prob: float = 0.0
    chromatic_prob: float = 0.0
    chromatic_range: float = 0.0
    field_varying_prob: float = 0.0
    in_focus_highlight_prob: float = 0.0
    energy_consistent_highlights: bool = False
    phone_processing_prob: float = 0.0
    phone_sharpen_radius_range: tuple[float, float] = (1.0, 3.0)
    phone_sharpen_amount_range: tuple[float, float] = (0.3, 1.0)
    phone_denoise_strength_range: tuple[float, float] = (0.5, 1.0)
    cuhk_in_focus_root: str | None = None
    cuhk_in_focus_weight: float = 0.25
    fine_pattern_weight: float = 0.0
    eight_bit_samples: bool = False
    coc_histogram: tuple[tuple[float, float], ...] | None = None

    def __post_init__(self):
        if not 0 < self.coc_step <= 1:
            raise ValueError(f"`coc_step` must be in (0, 1] pixels, got {self.coc_step}.")
        if not 0 < self.max_coc <= 64:
            raise ValueError(f"`max_coc` must be in (0, 64] pixels, got {self.max_coc}.")
        probabilities = (
            "noise_prob",
            "jpeg_prob",
            "in_focus_prob",
            "highlight_prob",
            "grey_prob",
            "vertical_split_prob",
            "chromatic_prob",
            "field_varying_prob",
            "in_focus_highlight_prob",
            "phone_processing_prob",
            "cuhk_in_focus_weight",
            "fine_pattern_weight",
        )
        for name in probabilities + ("all_in_focus_prob", "background_in_focus_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"`{name}` must be a probability in [0, 1], got {getattr(self, name)}.")
        if not 0 <= self.chromatic_range < 0.5:
            raise ValueError(f"`chromatic_range` must be a radius scale in [0, 0.5), got {self.chromatic_range}.")
        radius = self.phone_sharpen_radius_range
        if not 0 < radius[0] <= radius[1]:
            raise ValueError(f"`phone_sharpen_radius_range` must be an increasing pair of px > 0, got {radius}.")
        if self.coc_histogram is not None:
            bins = tuple((float(r), float(w)) for r, w in self.coc_histogram)
            object.__setattr__(self, "coc_histogram", bins)  # lists (from JSON) become tuples
            if not bins or any(r <= 0 or w < 0 for r, w in bins) or sum(w for _, w in bins) <= 0:
                raise ValueError(
                    "`coc_histogram` must be (radius_px > 0, weight >= 0) bins with a positive total weight, "
                    f"got {self.coc_histogram}."
                )

    @classmethod
    def varied(cls, **changes) -> DualPixelConfig:
        """The training default: every PSF family, random DP masks, highlights, grey and in-focus scenes, tone
        curves, axial chromatic aberration, PSFs that change across the frame, and cleaner-to-noisier sensors
        than the first engine (see the class docstring)."""
        values = dict(
            psf_families=PSF_FAMILIES,
            split_softness_range=(0.05, 0.4),
            light_falloff_range=(0.0, 0.6),
            highlight_prob=0.4,
            highlight_gain_range=(1.5, 8.0),
            grey_prob=0.1,
            all_in_focus_prob=0.12,
            background_in_focus_prob=0.2,
            tone_curve_range=(0.0, 0.6),
            split_offset_range=(-0.15, 0.15),
            noise_prob=0.7,
            shot_noise_range=(3e-5, 5e-3),
            read_noise_range=(2e-4, 5e-3),
            jpeg_prob=0.4,
            jpeg_quality_range=(70.0, 97.0),
            chromatic_prob=0.25,
            chromatic_range=0.08,
            field_varying_prob=0.1,
        )
        values.update(changes)
        return cls(**values)

    @classmethod
    def named(cls, name: str, **changes) -> DualPixelConfig:
        """The engine a ``--data_config`` flag names: ``"eq3"`` (the class defaults, the first engine) or
        ``"varied"`` (:meth:`varied`), optionally followed by ``ENGINE_CHANGES`` names joined with ``+``
        (``"varied+phone_processing+in_focus_highlights"``), applied in that order."""
        base, *extra = name.split("+")
        if base not in DATA_CONFIGS:
            raise ValueError(f"Unknown data config {base!r}; choose from {DATA_CONFIGS}.")
        config = cls.varied(**changes) if base == "varied" else cls(**changes)
        for change in extra:
            config = config.with_change(change)
        return config

    def with_change(self, name: str, **values) -> DualPixelConfig:
        """This config with the ``ENGINE_CHANGES`` entry ``name`` applied; ``values`` override that entry's fields
        (e.g. ``with_change("real_coc_distribution", coc_histogram=bins)``)."""
        if name not in ENGINE_CHANGES:
            raise ValueError(f"Unknown engine change {name!r}; choose from {tuple(ENGINE_CHANGES)}.")
        fields = ENGINE_CHANGES[name]
        foreign = set(values) - set(fields)
        if foreign:
            raise ValueError(f"Engine change {name!r} sets {sorted(fields)}, not {sorted(foreign)}.")
        fields = {**fields, **values}
        missing = [k for k, v in fields.items() if v is None]
        if missing:
            raise ValueError(f"Engine change {name!r} needs a value for {missing} (none is built in yet).")
        return self.replace(**fields)

    def clean(self) -> DualPixelConfig:
        """The same optics and scenes without any photometric or sensor effect: a pure optical rendering."""
        return self.replace(
            gamma_range=(1.0, 1.0),
            exposure_range=(1.0, 1.0),
            vignetting_range=(0.0, 0.0),
            noise_prob=0.0,
            jpeg_prob=0.0,
        )

    def replace(self, **changes) -> DualPixelConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return {k: _to_lists(v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> DualPixelConfig:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - fields
        if unknown:
            raise ValueError(f"Unknown DualPixelConfig fields {sorted(unknown)}.")
        return cls(**{k: _to_tuples(v) for k, v in values.items()})


def _to_lists(value):
    return [_to_lists(v) for v in value] if isinstance(value, (tuple, list)) else value


def _to_tuples(value):
    return tuple(_to_tuples(v) for v in value) if isinstance(value, (tuple, list)) else value


def coc_histogram_from_values(
    values, num_bins: int = 24, max_coc: float = 25.0, min_coc: float = 0.25
) -> tuple[tuple[float, float], ...]:
    """``coc_histogram`` bins from |CoC| values in px (any array shape; NaNs dropped): ``num_bins`` log-spaced
    bins between ``min_coc`` and ``max_coc`` (values outside are clipped into the end bins), each given as its
    geometric centre and the share of values in it (empty bins kept at weight 0, so the bin edges stay put).

    The drawn value is the scene's CoC **scale** ``A`` (``coc = A * (rho_focus - rho)``, ``|rho_focus - rho| <= 1``),
    so pass one value per real map that plays that role (e.g. each map's 95th-percentile |CoC|): per-pixel values
    would give scenes whose per-pixel |CoC| is smaller than the real one.
    """
    import numpy as np

    v = np.abs(np.asarray(values, dtype=np.float64).ravel())
    v = v[np.isfinite(v)]
    if v.size == 0:
        raise ValueError("`values` holds no finite |CoC| value.")
    if not 0 < min_coc < max_coc or num_bins < 1:
        raise ValueError(f"Need 0 < min_coc < max_coc and num_bins >= 1, got {min_coc}, {max_coc}, {num_bins}.")
    edges = np.geomspace(min_coc, max_coc, num_bins + 1)
    counts, _ = np.histogram(np.clip(v, min_coc, max_coc), bins=edges)
    centres = np.sqrt(edges[:-1] * edges[1:])
    return tuple((round(float(c), 6), float(n) / v.size) for c, n in zip(centres, counts, strict=True))


REAL_COC_HISTOGRAM = coc_histogram_from_values([*REAL_COC_SCALES, *(2 * v for v in REAL_COC_SCALES)], num_bins=12)
ENGINE_CHANGES["real_coc_distribution"] = dict(coc_histogram=REAL_COC_HISTOGRAM)

__all__ = [
    "DATA_CONFIGS",
    "ENGINE_CHANGES",
    "REAL_COC_HISTOGRAM",
    "REAL_COC_SCALES",
    "DualPixelConfig",
    "coc_histogram_from_values",
]
