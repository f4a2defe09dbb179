"""What the stand-in webui claims to have installed: samplers, schedulers, models, options.

The names and shapes are those of A1111 v1.10.1 (a1111-api.md §5). Everything here is static
data; the other behaviours swap in their own `Catalog` (variants.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from sdbatch.standin.a1111 import networks

VERSION = "v1.10.1"


@dataclass(frozen=True)
class Sampler:
    name: str
    aliases: tuple[str, ...]
    # Stringified the way pydantic v1 renders SamplerItem.options (True -> "True"); SD.Next
    # lists its diffusers config with native JSON values.
    options: tuple[tuple[str, Any], ...] = ()
    cls: str | None = None  # the diffusers scheduler class (SD.Next /schedulers)

    @property
    def default_scheduler(self) -> str | None:
        return dict(self.options).get("scheduler")

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "aliases": list(self.aliases), "options": dict(self.options)}


@dataclass(frozen=True)
class Scheduler:
    name: str
    label: str
    aliases: tuple[str, ...] | None = None
    default_rho: float = -1.0
    need_inner_model: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "aliases": None if self.aliases is None else list(self.aliases),
            "default_rho": self.default_rho,
            "need_inner_model": self.need_inner_model,
        }


@dataclass(frozen=True)
class Checkpoint:
    filename: str  # basename, e.g. "v1-5-pruned-emaonly.safetensors"
    sha256: str
    nan: bool = False  # a broken model: every txt2img on it fails with NansException
    # Hash known before the first load (the webui's cache.json has it). A fresh install knows
    # none but the model it started with: /sd-models lists the others with hash null and a
    # title without "[hash]", and hash aliases find nothing, until loaded once (OBSERVED 11).
    hashed: bool = True
    text_width: int = 768  # of its text encoder: embeddings of another width are skipped

    @property
    def model_name(self) -> str:
        return self.filename.rsplit(".", 1)[0]

    @property
    def shorthash(self) -> str:
        return self.sha256[:10]

    @property
    def title(self) -> str:
        return f"{self.filename} [{self.shorthash}]"

    def aliases_now(self, hashed: bool) -> frozenset[str]:
        return self.aliases if hashed else frozenset({self.filename, self.model_name})

    @property
    def aliases(self) -> frozenset[str]:
        # sd_models.CheckpointInfo.ids, minus the legacy 8-hex hash we cannot fake honestly.
        return frozenset(
            {
                self.title,
                self.filename,
                self.model_name,
                self.shorthash,
                self.sha256,
                f"{self.model_name} [{self.shorthash}]",
                f"{self.filename} [{self.sha256}]",
            }
        )

    def as_json(self, hashed: bool = True) -> dict[str, Any]:
        return {
            "title": self.title if hashed else self.filename,
            "model_name": self.model_name,
            "hash": self.shorthash if hashed else None,
            "sha256": self.sha256 if hashed else None,
            "filename": f"/mock/models/Stable-diffusion/{self.filename}",
            "config": None,
        }


def _fake_sha256(filename: str) -> str:
    # Made-up but stable hashes, so titles never change between runs.
    return hashlib.sha256(f"sdbatch-mock:{filename}".encode()).hexdigest()


_KARRAS = (("scheduler", "karras"),)
_EXPO = (("scheduler", "exponential"), ("brownian_noise", "True"))


@dataclass(frozen=True)
class Catalog:
    version: str = VERSION
    samplers: tuple[Sampler, ...] = (
        Sampler("DPM++ 2M", ("k_dpmpp_2m",), _KARRAS),
        Sampler(
            "DPM++ SDE",
            ("k_dpmpp_sde",),
            (*_KARRAS, ("second_order", "True"), ("brownian_noise", "True")),
        ),
        Sampler("DPM++ 2M SDE", ("k_dpmpp_2m_sde",), _EXPO),
        Sampler("DPM++ 2M SDE Heun", ("k_dpmpp_2m_sde_heun",), (*_EXPO, ("solver_type", "heun"))),
        Sampler(
            "DPM++ 2S a",
            ("k_dpmpp_2s_a",),
            (*_KARRAS, ("uses_ensd", "True"), ("second_order", "True")),
        ),
        Sampler(
            "DPM++ 3M SDE",
            ("k_dpmpp_3m_sde",),
            (
                ("scheduler", "exponential"),
                ("discard_next_to_last_sigma", "True"),
                ("brownian_noise", "True"),
            ),
        ),
        Sampler("Euler a", ("k_euler_a", "k_euler_ancestral"), (("uses_ensd", "True"),)),
        Sampler("Euler", ("k_euler",)),
        Sampler("LMS", ("k_lms",)),
        Sampler("Heun", ("k_heun",), (("second_order", "True"),)),
        Sampler(
            "DPM2",
            ("k_dpm_2",),
            (*_KARRAS, ("discard_next_to_last_sigma", "True"), ("second_order", "True")),
        ),
        Sampler(
            "DPM2 a",
            ("k_dpm_2_a",),
            (
                *_KARRAS,
                ("discard_next_to_last_sigma", "True"),
                ("uses_ensd", "True"),
                ("second_order", "True"),
            ),
        ),
        Sampler("DPM fast", ("k_dpm_fast",), (("uses_ensd", "True"),)),
        Sampler("DPM adaptive", ("k_dpm_ad",), (("uses_ensd", "True"),)),
        Sampler("Restart", ("restart",), (*_KARRAS, ("second_order", "True"))),
        Sampler("DDIM", ("ddim",)),
        Sampler("DDIM CFG++", ("ddim_cfgpp",)),
        Sampler("PLMS", ("plms",)),
        Sampler("UniPC", ("unipc",)),
        Sampler("LCM", ("k_lcm",)),
    )
    schedulers: tuple[Scheduler, ...] = (
        Scheduler("automatic", "Automatic"),
        Scheduler("uniform", "Uniform", need_inner_model=True),
        Scheduler("karras", "Karras", default_rho=7.0),
        Scheduler("exponential", "Exponential"),
        Scheduler("polyexponential", "Polyexponential", default_rho=1.0),
        Scheduler("sgm_uniform", "SGM Uniform", ("SGMUniform",), need_inner_model=True),
        Scheduler("kl_optimal", "KL Optimal"),
        Scheduler("align_your_steps", "Align Your Steps"),
        Scheduler("simple", "Simple", need_inner_model=True),
        Scheduler("normal", "Normal", need_inner_model=True),
        Scheduler("ddim", "DDIM", need_inner_model=True),
        Scheduler("beta", "Beta", need_inner_model=True),
    )
    checkpoints: tuple[Checkpoint, ...] = (
        # The first one is the contract's example model, hash included.
        Checkpoint(
            "v1-5-pruned-emaonly.safetensors",
            "6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa",
        ),
        Checkpoint(
            "sd_xl_base_1.0.safetensors",
            _fake_sha256("sd_xl_base_1.0.safetensors"),
            text_width=2048,
        ),
        Checkpoint("dreamshaper_8.safetensors", _fake_sha256("dreamshaper_8.safetensors")),
    )
    # As the real v1.10.1 lists them with no upscaler models downloaded (g_upscalers).
    upscalers: tuple[str, ...] = (
        "None",
        "Lanczos",
        "Nearest",
        "DAT x2",
        "DAT x3",
        "DAT x4",
        "ESRGAN_4x",
        "LDSR",
        "R-ESRGAN 4x+",
        "R-ESRGAN 4x+ Anime6B",
        "ScuNET GAN",
        "ScuNET PSNR",
        "SwinIR 4x",
    )
    latent_upscale_modes: tuple[str, ...] = (
        "Latent",
        "Latent (antialiased)",
        "Latent (bicubic)",
        "Latent (bicubic antialiased)",
        "Latent (nearest)",
        "Latent (nearest-exact)",
    )
    # Script titles are matched case-insensitively, as Api.get_script does.
    selectable_scripts: tuple[str, ...] = (
        "prompt matrix",
        "prompts from file or textbox",
        "x/y/z plot",
    )
    alwayson_scripts: tuple[str, ...] = ("extra options", "hypertile", "refiner", "seed")
    loras: tuple[networks.Lora, ...] = networks.LORAS
    # Files copied in after startup: listed only after POST /refresh-loras (extranets.py).
    pending_loras: tuple[networks.Lora, ...] = ()
    embeddings: tuple[networks.Embedding, ...] = networks.EMBEDDINGS
    styles: tuple[networks.Style, ...] = networks.STYLES
    hypernetworks: tuple[networks.Hypernetwork, ...] = networks.HYPERNETWORKS

    def sampler(self, name: str) -> Sampler | None:
        return next((s for s in self.samplers if s.name == name), None)

    def scheduler(self, name_or_label: str | None) -> Scheduler | None:
        # schedulers_map holds names and labels, not aliases.
        return next((s for s in self.schedulers if name_or_label in (s.name, s.label)), None)

    def checkpoint(self, alias: str) -> Checkpoint | None:
        return next((c for c in self.checkpoints if alias in c.aliases), None)

    # Reported as floats by GET /options once set (a fresh config says 1, after any set 2.0),
    # whatever type they are held in: a client that sends back what it read sends a float
    # (own/clip_float_*).
    float_on_wire: frozenset[str] = frozenset({"CLIP_stop_at_last_layers"})

    def default_options(self) -> dict[str, Any]:
        # Integer options with a truthy default are floats on the wire (Options.typemap).
        return {
            "samples_format": "png",
            "sd_model_checkpoint": self.checkpoints[0].title,
            "sd_checkpoint_hash": self.checkpoints[0].sha256,
            "sd_vae": "Automatic",
            "CLIP_stop_at_last_layers": 1,
            "eta_noise_seed_delta": 0,
            "return_grid": True,
            "return_mask": False,  # img2img: masks interleaved in `images` when on
            "return_mask_composite": False,
            "grid_only_if_multiple": True,
            "enable_pnginfo": True,
            "jpeg_quality": 80.0,
            "webp_lossless": False,
            "face_restoration": False,
            "face_restoration_model": "CodeFormer",
            "tiling": False,
            "eta_ancestral": 1.0,
            "eta_ddim": 0.0,
            "show_progress_every_n_steps": 10.0,
            "add_model_hash_to_info": True,
            "add_model_name_to_info": True,
            "add_version_to_infotext": True,
            # The rest of the options that change the image, as a fresh v1.10.1 reports them.
            "sd_unet": "Automatic",
            "randn_source": "GPU",
            "emphasis": "Original",
            "s_churn": 0.0,
            "s_tmin": 0.0,
            "s_tmax": 0.0,
            "s_noise": 1.0,
            "s_min_uncond": 0.0,
            "token_merging_ratio": 0.0,
            "pad_cond_uncond": False,
            "pad_cond_uncond_v0": False,
            "always_discard_next_to_last_sigma": False,
            "sgm_noise_multiplier": False,
            "rho": 0.0,
            "sigma_min": 0.0,
            "sigma_max": 0.0,
            "upcast_attn": False,
            "comma_padding_backtrack": 20,
            "sd_noise_schedule": "Default",
            "use_old_karras_scheduler_sigmas": False,
            "use_old_scheduling": False,
            "use_old_hires_fix_width_height": False,
            "no_dpmpp_sde_batch_determinism": False,
            "fp8_storage": "Disable",
            "lora_add_hashes_to_infotext": True,
            "textual_inversion_add_hashes_to_infotext": True,
        }


# The checkpoints `../shared/real-webui/setup-a1111.sh` makes, with their real hashes, so the
# stand-in can stand where the real webui stood in a conformance run (`--catalog tiny`).
TINY = Catalog(
    version="v1.10.1",
    # The real test webui has no LoRAs, embeddings, styles or hypernetworks.
    loras=(),
    embeddings=(),
    styles=(),
    hypernetworks=(),
    checkpoints=(
        Checkpoint(
            "tinyC.safetensors", "587597b8f42c50369c4beb92f8ad20b6925b496386fdf84f4fca5bcd4eca07bd"
        ),
        Checkpoint(
            "tinyD.safetensors",
            "4477fbf420a1d1309fc14f1cd4f8142fc2e132bbcf59aeeeb1f27f0894df02e1",
            hashed=False,
        ),
        Checkpoint(
            "tinyNaN.safetensors",
            "43917388e3559b2d8a01e41fb87d52fc407d865a1c289fd7f25426dd24092674",
            nan=True,
            hashed=False,
        ),
    ),
)
CATALOGS = {"default": Catalog(), "tiny": TINY}
