"""Inference: :class:`DefocusDeblurPipeline` (one image in, the deblurred image out; or the DP views in, a CoC map
out), and what it runs on: tiled and self-ensembled application, real dual-pixel view conventions, and loading of
trained models from folders or the Hub."""

from .pipeline_defocus_deblur import DefocusDeblurPipeline, DefocusDeblurPipelineOutput

__all__ = ["DefocusDeblurPipeline", "DefocusDeblurPipelineOutput"]
