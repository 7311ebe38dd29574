"""Hub plumbing shared by every model: diffusers' ModelMixin + ConfigMixin with a strict config check."""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin


class StrictConfigModel(ModelMixin, ConfigMixin):
    """``ModelMixin`` + ``ConfigMixin`` whose configs must not carry unknown keys.

    diffusers logs and ignores unknown ``config.json`` keys; for these models a misspelt key would silently build
    a different network than the one the weights were trained as, so it is an error that names the key.
    """

    @classmethod
    def extract_init_dict(cls, config_dict, **kwargs):
        expected = cls._get_init_keys(cls) - {"self"}
        unexpected = sorted(k for k in config_dict if not k.startswith("_") and k not in expected)
        if unexpected:
            raise ValueError(
                f"Unknown {cls.__name__} config key(s) {unexpected}; expected a subset of {sorted(expected)}. "
                "Check the config.json (a misspelt key would otherwise build a different network)."
            )
        return super().extract_init_dict(config_dict, **kwargs)

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        model = super().from_pretrained(*args, **kwargs)
        # safetensors hands back views into one file buffer, at offsets that are not 64-byte aligned, and oneDNN's
        # convolutions sum in another order for unaligned weights (1 ulp apart, measured). Fresh allocations make a
        # loaded model compute bit-for-bit what the saved one did.
        with torch.no_grad():
            for tensor in (*model.parameters(), *model.buffers()):
                if tensor.device.type == "cpu":
                    tensor.data = tensor.data.clone()
        return model
