"""What the stand-in has installed besides checkpoints: LoRAs, textual-inversion embeddings,
prompt styles and hypernetworks, each able to answer as A1111 v1.10.1 lists it
(a1111-img2img-and-extra-networks.md B1, B5, B6, B7). Static data; `extranets` serves it and
applies it to prompts.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

# modules/sd_models.read_metadata_from_safetensors moves these keys to the front (B1).
_FIRST_KEYS = (
    "ss_sd_model_name",
    "ss_resolution",
    "ss_clip_skip",
    "ss_num_train_images",
    "ss_tag_frequency",
)


def fake_sha256(kind: str, name: str) -> str:
    # Made up but stable, so the hashes in infotexts never change between runs.
    return hashlib.sha256(f"sdbatch-mock:{kind}:{name}".encode()).hexdigest()


@dataclass(frozen=True)
class Lora:
    name: str  # the file stem: subfolders are never part of it (B1)
    # The safetensors `__metadata__` header as stored: every value a string.
    metadata: tuple[tuple[str, str], ...] = ()
    folder: str = ""  # below models/Lora
    suffix: str = ".safetensors"
    broken: bool = False  # listed, but fails to load: skipped with a console traceback (B4)

    @property
    def alias(self) -> str:
        return dict(self.metadata).get("ss_output_name") or self.name

    @property
    def sha256(self) -> str:
        # The webui takes a hash stored in the metadata over hashing the file itself.
        return dict(self.metadata).get("sshs_model_hash") or fake_sha256("lora", self.name)

    @property
    def shorthash(self) -> str:
        return self.sha256[:12]

    def as_json(self) -> dict[str, Any]:
        """One entry of GET /sdapi/v1/loras."""
        folder = f"{self.folder}/" if self.folder else ""
        return {
            "name": self.name,
            "alias": self.alias,
            "path": f"/mock/models/Lora/{folder}{self.name}{self.suffix}",
            "metadata": self._metadata(),
        }

    def _metadata(self) -> dict[str, Any]:
        if self.suffix != ".safetensors":
            return {}  # .pt and .ckpt files carry no header
        stored = dict(self.metadata)
        ordered = {k: stored[k] for k in _FIRST_KEYS if k in stored}
        ordered.update(stored)
        return {k: _parsed(v) for k, v in ordered.items()}


def _parsed(value: str) -> Any:
    """Values that look like JSON objects are parsed; the rest stay strings."""
    if not value.startswith("{"):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


@dataclass(frozen=True)
class Embedding:
    name: str  # the file stem, or the name stored in a PNG/WEBP embedding
    shape: int = 768  # vector width: 768 SD1, 1024 SD2, 2048 SDXL
    vectors: int = 1
    step: int | None = None
    sd_checkpoint: str | None = None
    sd_checkpoint_name: str | None = None

    @property
    def shorthash(self) -> str:
        return fake_sha256("embedding", self.name)[:12]

    def as_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "sd_checkpoint": self.sd_checkpoint,
            "sd_checkpoint_name": self.sd_checkpoint_name,
            "shape": self.shape,
            "vectors": self.vectors,
        }


@dataclass(frozen=True)
class Style:
    name: str
    prompt: str = ""  # `{prompt}` marks where the prompt goes; else the style is appended
    negative_prompt: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "prompt": self.prompt, "negative_prompt": self.negative_prompt}


@dataclass(frozen=True)
class Hypernetwork:
    name: str

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "path": f"/mock/models/hypernetworks/{self.name}.pt"}


# A couple of each for the default catalog, so tests have something to name.
LORAS = (
    Lora(
        "add_detail",
        (
            ("ss_output_name", "add_detail"),
            ("ss_sd_model_name", "v1-5-pruned.ckpt"),
            ("ss_resolution", "(512, 512)"),
            ("ss_clip_skip", "None"),
            ("ss_num_train_images", "1200"),
            ("ss_tag_frequency", '{"img": {"detail": 50}}'),
            ("sshs_model_hash", fake_sha256("lora-file", "add_detail")),
        ),
    ),
    # Its alias differs from the file name: a prompt may use either.
    Lora(
        "pixel-art-xl-v1.1",
        (("ss_output_name", "pixelart"), ("ss_sd_model_name", "sd_xl_base_1.0.safetensors")),
        folder="style",
    ),
    Lora("film_grain", suffix=".pt"),
)
EMBEDDINGS = (Embedding("EasyNegative", 768, 8), Embedding("negativeXL_D", 2048, 8))
STYLES = (
    Style("cinematic", "{prompt}, cinematic lighting, film grain", "cartoon, drawing"),
    Style("watercolor", "watercolor painting, soft edges", "photo"),
)
HYPERNETWORKS = (Hypernetwork("anime_3"),)
