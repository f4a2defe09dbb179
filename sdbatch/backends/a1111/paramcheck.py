"""The rest of the infotext: every generation parameter the webui reports, against what the
payload asked plus the webui's defaults.

Entry point: `check_params(sent, params, png_size=..., seed=...) -> {key: [asked, got, note]}`,
called by `postcheck.compare` after its sampler, schedule and checkpoint checks. Why: v1.10
keeps an option one request overrode for every later one (OBSERVED 1: `Clip skip: 2` in images
that never asked for it) and rounds sizes down to multiples of 8 while its `info` and infotext
still echo the asked size (OBSERVED 5). Only the PNG itself and the parameters the webui adds
on its own tell. A parameter the payload did not ask for is a mismatch with a note in words,
and so is a LoRA the prompt names that the infotext's `Lora hashes` leaves out (`extranets`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

# The webui's values when the payload says nothing (StableDiffusionProcessingTxt2Img, opts).
DEFAULT_CLIP_SKIP = 1
DEFAULT_HR_SCALE = 2.0
DEFAULT_IMG2IMG_DENOISE = 0.75  # img2img's API default (a1111-img2img-and-extra-networks.md A2)
# Parameters the webui writes only when an option is off its default, with that option: seeing
# one the job did not set means a setting of the webui, or of an earlier request, applied.
OPTION_MARKERS: Mapping[str, str] = {
    "RNG": "randn_source",
    "Emphasis": "emphasis",
    "Eta DDIM": "eta_ddim",
    "Eta": "eta_ancestral",
    "Token merging ratio": "token_merging_ratio",
    "Pad conds": "pad_cond_uncond",
    "Pad conds v0": "pad_cond_uncond_v0",
    "NGMS": "s_min_uncond",
    "Discard penultimate sigma": "always_discard_next_to_last_sigma",
    "SGM noise multiplier": "sgm_noise_multiplier",
    "Schedule rho": "rho",
    "Schedule max sigma": "sigma_max",
    "Schedule min sigma": "sigma_min",
}
# Payload fields that may put the same marker there on purpose.
_MARKER_FIELDS: Mapping[str, str] = {"Eta": "eta", "Eta DDIM": "eta", "NGMS": "s_min_uncond"}
# Parameters that exist only because a payload field asked for them.
_FIELD_PARAMS: Mapping[str, str] = {
    "Denoising strength": "denoising_strength",
    "Hires upscale": "hr_scale",
    "Hires resize": "hr_resize_x",
    "Hires steps": "hr_second_pass_steps",
    "Hires upscaler": "hr_upscaler",
    "Variation seed": "subseed",
    "Variation seed strength": "subseed_strength",
    "Seed resize from": "seed_resize_from_w",
    "Face restoration": "restore_faces",
    "Tiling": "tiling",
}
_HIRES = {"Denoising strength", "Hires upscale", "Hires resize", "Hires steps", "Hires upscaler"}


def unasked(param: str, got: Any, option: str | None = None) -> str:
    fix = f" (override_settings: {{{option}: ...}} pins it)" if option else ""
    return (
        f"the webui applied {param}: {got}, which this job did not ask for — left over from an "
        f"earlier request, or a setting of the webui{fix}"
    )


def held(option: str, value: Any, default: Any) -> str:
    return (
        f"the webui held {option} = {value!r} (default {default!r}), which this job did not ask "
        f"for — left over from an earlier request, or a setting of the webui; the whole run "
        f"kept it (override_settings: {{{option}: ...}} chooses)"
    )


def check_params(
    sent: Mapping[str, Any],
    params: Mapping[str, str],
    *,
    png_size: tuple[int, int] | None = None,
    seed: int | None = None,
    inherited: Mapping[str, tuple[Any, Any]] | None = None,
) -> dict[str, list[Any]]:
    """`inherited`: options preflight pinned at the server's off-default value though the job
    never set them (key -> (value, default)); each is a mismatch of every image it went into."""
    diffs: dict[str, list[Any]] = {}
    raw_settings = sent.get("override_settings")
    settings: Mapping[str, Any] = raw_settings if isinstance(raw_settings, Mapping) else {}
    for option, (value, default) in (inherited or {}).items():
        if settings.get(option) == value:
            diffs[option] = [default, value, held(option, value, default)]
    # A size the payload leaves out is the webui's default (SD.Next's is not A1111's).
    told = [int(n) for n in params.get("Size", "").split("x") if n.isdigit()]
    if len(told) == 2:
        sent = {
            "width": told[0],
            "height": told[1],
            **{k: v for k, v in sent.items() if v is not None},
        }
    if png_size is not None and png_size != (want := final_size(sent)):
        asked, got = "x".join(map(str, want)), "x".join(map(str, png_size))
        note = f"the webui made a {got} image for {asked} (sizes must be multiples of 8)"
        diffs["image_size"] = [asked, got, note]
    if seed is not None and "Seed" in params and not same(seed, params["Seed"]):
        diffs["seed"] = [seed, params["Seed"]]
    _option(diffs, params, settings, "Clip skip", "CLIP_stop_at_last_layers", DEFAULT_CLIP_SKIP)
    _option(diffs, params, settings, "ENSD", "eta_noise_seed_delta", 0, absent_ok=True)
    hires = bool(sent.get("enable_hr"))
    img2img = "init_images" in sent  # img2img always writes its denoising strength
    for param, key in _FIELD_PARAMS.items():
        if param not in params:
            continue
        got = params[param]
        if img2img and key == "denoising_strength":
            strength = sent.get(key)
            expected = DEFAULT_IMG2IMG_DENOISE if strength is None else strength
            if not same(expected, got):
                diffs[key] = [expected, got]
            continue
        if not (hires if param in _HIRES else _asks(sent, key)):
            diffs[key] = [None, got, unasked(param, got)]
            continue
        expected = _expected(sent, param, sent.get(key))
        if expected is not None and not same(expected, got):
            diffs[key] = [expected, got]
    for param, option in OPTION_MARKERS.items():
        field = _MARKER_FIELDS.get(param)
        if param in params and option not in settings and not (field and sent.get(field)):
            diffs[option] = [None, params[param], unasked(param, params[param], option)]
    _vae(diffs, params, settings)
    # Styles add to the prompts on purpose; a payload without a prompt is not a whole one.
    if params and "prompt" in sent and not sent.get("styles"):
        for param, key in (("Prompt", "prompt"), ("Negative prompt", "negative_prompt")):
            asked, got = _text(sent.get(key)), _text(params.get(param))
            if asked != got:
                diffs[key] = [asked, got]
    return diffs


def _asks(sent: Mapping[str, Any], key: str) -> bool:
    """Does the payload ask for what the parameter of `key` records?"""
    if key == "subseed":  # the webui records the variation seed it drew
        return bool(sent.get("subseed_strength"))
    if key == "seed_resize_from_w":
        return int(sent.get(key) or -1) > 0
    return bool(sent.get(key))


def final_size(sent: Mapping[str, Any]) -> tuple[int, int]:
    """The size of the image the payload asks for: the hires target with enable_hr."""
    width, height = int(sent.get("width") or 512), int(sent.get("height") or 512)
    if not sent.get("enable_hr"):
        return width, height
    rx, ry = int(sent.get("hr_resize_x") or 0), int(sent.get("hr_resize_y") or 0)
    if rx == 0 and ry == 0:
        scale = float(sent.get("hr_scale") or DEFAULT_HR_SCALE)
        return int(width * scale), int(height * scale)
    return (rx or ry * width // height, ry or rx * height // width)


def _option(
    diffs: dict[str, list[Any]],
    params: Mapping[str, str],
    settings: Mapping[str, Any],
    param: str,
    option: str,
    default: Any,
    *,
    absent_ok: bool = False,
) -> None:
    """An option the infotext shows only off its default; `absent_ok` when the sampler decides
    whether it is shown at all (ENSD only for samplers that use it)."""
    if param not in params and absent_ok:
        return
    asked = settings.get(option)
    got = params.get(param, default)
    if same(default if asked is None else asked, got):
        return
    note = unasked(param, got, option) if asked is None else None
    diffs[option] = [asked if asked is not None else default, got, *([note] if note else [])]


def _vae(
    diffs: dict[str, list[Any]], params: Mapping[str, str], settings: Mapping[str, Any]
) -> None:
    """A VAE asked by name must be the one used; "None" means none; "Automatic" may pick one
    that sits beside the checkpoint, so it is not judged."""
    asked = settings.get("sd_vae")
    got = params.get("VAE")
    if asked in (None, "Automatic"):
        return
    if asked == "None":
        if got is not None:
            diffs["sd_vae"] = [asked, got]
        return
    stem = str(asked).rsplit("/", 1)[-1].rsplit(".", 1)[0]
    if got is None or got.rsplit(".", 1)[0] != stem:
        diffs["sd_vae"] = [asked, got]


def _expected(sent: Mapping[str, Any], param: str, wanted: Any) -> Any:
    """How the infotext writes the asked value of `param`; None when it cannot be judged."""
    if param == "Hires resize":
        return f"{sent.get('hr_resize_x') or 0}x{sent.get('hr_resize_y') or 0}"
    if param == "Seed resize from":
        return f"{sent.get('seed_resize_from_w')}x{sent.get('seed_resize_from_h')}"
    if param == "Hires upscale":
        return wanted if wanted is not None else DEFAULT_HR_SCALE
    if param in ("Face restoration", "Tiling"):
        return None  # the value is a model name or "True": present is all that was asked
    if param == "Variation seed" and wanted in (None, -1):
        return None  # the webui drew one
    return wanted


def _text(value: Any) -> str:
    return "" if value is None else str(value).replace("\r\n", "\n").strip()


def same(asked: Any, got: Any) -> bool:
    """Equal as the infotext writes them: numbers within rounding, booleans in any case."""
    if isinstance(asked, bool) or isinstance(got, bool):
        return str(asked).lower() == str(got).lower()
    try:
        return math.isclose(float(asked), float(got), rel_tol=1e-6, abs_tol=1e-6)
    except (TypeError, ValueError):
        return str(asked) == str(got)
