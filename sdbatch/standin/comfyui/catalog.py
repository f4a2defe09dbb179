"""What the stand-in ComfyUI has installed: its node classes and their `/object_info` entries,
its checkpoints, LoRAs and embeddings.

The entries in `object_info.json` are the real ComfyUI 0.3.64's answers for the classes the
stand-in runs (tests/data/real-comfyui/ records them), so a client's preflight against the
stand-in reads the very lists the real server gives: the 42 samplers and 9 schedulers, every
min/max, the tooltips. Only the model lists are filled in from the catalog, as the real server
fills them from its model folders. `zz_broken.safetensors` is listed like any checkpoint and
fails when it is loaded, as the real setup's garbage file does.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

# The real setup's checkpoints (setup-comfyui.sh); the broken one passes validation and fails
# at run time with safetensors' own error.
REAL_CHECKPOINTS = (
    "tiny_sd15_random.safetensors",
    "tiny_sd15_taesd_random.safetensors",
    "zz_broken.safetensors",
)
BROKEN_TYPE = "safetensors._safetensors_rust.SafetensorError"
BROKEN_MESSAGE = "Error while deserializing header: header too large\n"
# /models lists ComfyUI's model folder names, in its order (captured answer).
MODEL_FOLDERS = (
    "checkpoints",
    "configs",
    "loras",
    "vae",
    "text_encoders",
    "diffusion_models",
    "clip_vision",
    "style_models",
    "embeddings",
    "diffusers",
    "vae_approx",
    "controlnet",
    "gligen",
    "upscale_models",
    "custom_nodes",
    "hypernetworks",
    "photomaker",
    "classifiers",
    "model_patches",
    "audio_encoders",
)


def _load_entries() -> dict[str, Any]:
    text = resources.files("sdbatch.standin.comfyui").joinpath("object_info.json").read_text()
    entries: dict[str, Any] = json.loads(text)
    return entries


ENTRIES: dict[str, Any] = _load_entries()


@dataclass(frozen=True)
class Catalog:
    """The installed models (and the device's size). `broken` checkpoints fail to load with
    (exception type, message)."""

    checkpoints: tuple[str, ...] = REAL_CHECKPOINTS
    loras: tuple[str, ...] = ()
    embeddings: tuple[str, ...] = ()
    broken: dict[str, tuple[str, str]] = field(
        default_factory=lambda: {"zz_broken.safetensors": (BROKEN_TYPE, BROKEN_MESSAGE)}
    )
    # The pretend device's memory: a latent batch of more pixels fails at run time with an
    # out-of-memory error (EmptyLatentImage allows 16384x16384x4096, far past what a test or
    # this machine can draw as noise).
    max_pixels: int = 4096 * 4096 * 4

    def folder(self, name: str) -> list[str] | None:
        """GET /models/{folder}: the files, [] for a known empty folder, None for an unknown."""
        if name == "checkpoints":
            return list(self.checkpoints)
        if name == "loras":
            return list(self.loras)
        if name == "embeddings":
            return list(self.embeddings)
        return [] if name in MODEL_FOLDERS else None

    def object_info(self, inputs: list[str], class_type: str | None = None) -> dict[str, Any]:
        """All entries, or just `class_type`'s ({} for an unknown class, as the real one);
        `inputs` are the files of the input folder, LoadImage's list."""
        names = list(ENTRIES) if class_type is None else [class_type]
        return {n: self.entry(n, inputs) for n in names if n in ENTRIES}

    def entry(self, class_type: str, inputs: list[str]) -> dict[str, Any]:
        entry = copy.deepcopy(ENTRIES[class_type])
        required = entry["input"]["required"]
        combos = {"ckpt_name": self.checkpoints, "lora_name": self.loras, "image": inputs}
        for name, values in combos.items():
            if name in required and isinstance(required[name][0], list):
                required[name][0] = sorted(values)
        return entry


def is_output(class_type: str) -> bool:
    return bool(ENTRIES.get(class_type, {}).get("output_node"))


def output_types(class_type: str) -> list[str]:
    return list(ENTRIES[class_type]["output"])
