"""The webui options that change the image, with their v1.10.1 defaults.

Entry point: `changed_options(options, asked) -> [(key, value, default)]`, which preflight
logs as warnings. Why: an option one request overrode stays in force for every later request,
from any client (OBSERVED 1), and a user may have set one in the webui's settings long ago.
Preflight pins every option here at the server's value in every payload, so a run is the same
throughout and each row regenerates its image; one the job did not ask for is warned about
before a night is spent and marks each image it went into. The defaults are those the real
webui v1.10.1 reported with a fresh config.json.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from typing import Any

IMAGE_OPTIONS: Mapping[str, Any] = {
    "CLIP_stop_at_last_layers": 1,
    "eta_noise_seed_delta": 0,
    "sd_vae": "Automatic",
    "sd_unet": "Automatic",
    "randn_source": "GPU",
    "emphasis": "Original",
    "eta_ancestral": 1.0,
    "eta_ddim": 0.0,
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
    "face_restoration": False,
    "tiling": False,
    "comma_padding_backtrack": 20,
    "sd_noise_schedule": "Default",
    "use_old_karras_scheduler_sigmas": False,
    "use_old_scheduling": False,
    "use_old_hires_fix_width_height": False,
    "no_dpmpp_sde_batch_determinism": False,
    "fp8_storage": "Disable",
}

# Off in every img2img payload: when on, the webui puts each image's mask (and composite) after
# it in `images`, which infotexts and index_of_first_image do not count (a1111-img2img-... A5).
MASK_OPTIONS: Mapping[str, Any] = {"return_mask": False, "return_mask_composite": False}


def changed_options(
    options: Mapping[str, Any], asked: Container[str]
) -> list[tuple[str, Any, Any]]:
    """Image-changing options the server holds off their defaults that the job does not set
    itself: (key, the server's value, the default)."""
    return [
        (key, options[key], default)
        for key, default in IMAGE_OPTIONS.items()
        if key not in asked and key in options and options[key] != default  # 2.0 == 2
    ]


def wire_value(key: str, value: Any) -> Any:
    """An option as the webui must receive it. /options reports Clip skip 2 as 2.0, and v1.10.1
    given 2.0 in override_settings fails this and every later request with "TypeError: tuple
    indices must be integers or slices, not float" until /options sets it again (recorded:
    tests/data/real-a1111, own/clip_float_*). So an option whose default is an int gets an int."""
    default = IMAGE_OPTIONS.get(key)
    integral = isinstance(value, float) and value.is_integer()
    if integral and isinstance(default, int) and not isinstance(default, bool):
        return int(value)
    return value
