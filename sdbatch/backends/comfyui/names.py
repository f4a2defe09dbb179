"""A1111 sampler and scheduler names in ComfyUI's words (comfyui-api.md C10).

Entry point: `to_comfy(sampler, scheduler, samplers, schedulers) -> (sampler, scheduler)`:
ComfyUI's own names pass as they are; an A1111 label (or an old combined name such as
"DPM++ 2M Karras") is mapped by algorithm; a name with no equivalent comes back as given, so
preflight names it against the server's list. The same seed never gives the same image on the
two kinds of server (C11); only the algorithm is kept.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

# A1111 settings a payload carries under override_settings that ComfyUI has a node input for.
CHECKPOINT_SETTING = "sd_model_checkpoint"
CLIP_SKIP_SETTING = "CLIP_stop_at_last_layers"


def setting(payload: Mapping[str, Any], key: str) -> Any:
    """A field the plan may carry at the top or under override_settings."""
    overrides = payload.get("override_settings")
    if isinstance(overrides, Mapping) and key in overrides:
        return overrides[key]
    return payload.get(key)


# A1111 sampler label -> (ComfyUI sampler_name, the scheduler A1111's "Automatic" means for it).
SAMPLERS: dict[str, tuple[str, str]] = {
    "DPM++ 2M": ("dpmpp_2m", "karras"),
    "DPM++ SDE": ("dpmpp_sde", "karras"),
    "DPM++ 2M SDE": ("dpmpp_2m_sde", "exponential"),
    "DPM++ 2M SDE Heun": ("dpmpp_2m_sde_heun", "exponential"),
    "DPM++ 2S a": ("dpmpp_2s_ancestral", "karras"),
    "DPM++ 3M SDE": ("dpmpp_3m_sde", "exponential"),
    "Euler a": ("euler_ancestral", "normal"),
    "Euler": ("euler", "normal"),
    "LMS": ("lms", "normal"),
    "Heun": ("heun", "normal"),
    "DPM2": ("dpm_2", "karras"),
    "DPM2 a": ("dpm_2_ancestral", "karras"),
    "DPM fast": ("dpm_fast", "normal"),
    "DPM adaptive": ("dpm_adaptive", "normal"),
    "DDIM": ("ddim", "ddim_uniform"),
    "UniPC": ("uni_pc", "normal"),
    "LCM": ("lcm", "normal"),
    "HeunPP2": ("heunpp2", "normal"),
    "IPNDM": ("ipndm", "normal"),
    "IPNDM_V": ("ipndm_v", "normal"),
    "DEIS": ("deis", "normal"),
    "DDPM": ("ddpm", "normal"),
}

# A1111 scheduler name or label (casefolded) -> ComfyUI scheduler; "automatic" is per sampler.
SCHEDULERS: dict[str, str] = {
    "uniform": "normal",
    "karras": "karras",
    "exponential": "exponential",
    "sgm uniform": "sgm_uniform",
    "sgm_uniform": "sgm_uniform",
    "kl optimal": "kl_optimal",
    "kl_optimal": "kl_optimal",
    "simple": "simple",
    "normal": "normal",
    "ddim": "ddim_uniform",
    "beta": "beta",
}
AUTOMATIC = "automatic"
DEFAULT_SAMPLER = "euler"  # KSampler's default in ComfyUI, sent when the job names none
DEFAULT_SCHEDULER = "normal"


def _split_combined(name: str) -> tuple[str, str | None]:
    """ "DPM++ 2M Karras" -> ("DPM++ 2M", "karras"), as A1111 v1.10 splits it."""
    for label in sorted(SCHEDULERS, key=len, reverse=True):
        suffix = " " + label
        if name.casefold().endswith(suffix) and name[: -len(suffix)] in SAMPLERS:
            return name[: -len(suffix)], label
    return name, None


def to_comfy(
    sampler: str | None,
    scheduler: str | None,
    samplers: Collection[str],
    schedulers: Collection[str],
) -> tuple[str, str]:
    """The (sampler_name, scheduler) to send for what the job asked."""
    sampler = sampler or DEFAULT_SAMPLER
    automatic = DEFAULT_SCHEDULER
    if sampler not in samplers:
        base, label = _split_combined(sampler)
        if base in SAMPLERS:
            sampler, automatic = SAMPLERS[base]
            if label is not None and scheduler is None:
                scheduler = label
    if scheduler is None or scheduler.casefold() == AUTOMATIC:
        return sampler, automatic
    if scheduler in schedulers:
        return sampler, scheduler
    return sampler, SCHEDULERS.get(scheduler.casefold(), scheduler)
