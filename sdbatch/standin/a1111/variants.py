"""The installed samplers and schedulers of the other webuis the mock can pose as.

v1.8 and v1.9 lists are the A1111 `sd_samplers_kdiffusion` / `sd_schedulers` tables of those
tags as we know them (a1111-api.md §5: combined names until 1.8, split from 1.9); Forge adds
its samplers and schedulers to v1.10's (§8); SD.Next is diffusers-based, with its own names.
"""

from __future__ import annotations

from dataclasses import replace

from sdbatch.standin.a1111.catalog import Catalog, Sampler, Scheduler

_V110 = Catalog()

# -- v1.9.4: v1.10 minus what 1.10 added (DDIM CFG++; the Simple..Beta schedulers) -----------
V19 = replace(
    _V110,
    version="v1.9.4",
    samplers=tuple(s for s in _V110.samplers if s.name != "DDIM CFG++"),
    schedulers=_V110.schedulers[:8],
)

# -- v1.8.0: every schedule variant is a sampler of its own ------------------------------------
_T = "True"
_KA = ("scheduler", "karras")
_EX = ("scheduler", "exponential")
_SO, _BN, _UE = ("second_order", _T), ("brownian_noise", _T), ("uses_ensd", _T)
_DN = ("discard_next_to_last_sigma", _T)
_HEUN = ("solver_type", "heun")
V18 = replace(
    _V110,
    version="v1.8.0",
    samplers=(
        Sampler("DPM++ 2M Karras", ("k_dpmpp_2m_ka",), (_KA,)),
        Sampler("DPM++ SDE Karras", ("k_dpmpp_sde_ka",), (_KA, _SO, _BN)),
        Sampler("DPM++ 2M SDE Exponential", ("k_dpmpp_2m_sde_exp",), (_EX, _BN)),
        Sampler("DPM++ 2M SDE Karras", ("k_dpmpp_2m_sde_ka",), (_KA, _BN)),
        Sampler("Euler a", ("k_euler_a", "k_euler_ancestral"), (_UE,)),
        Sampler("Euler", ("k_euler",)),
        Sampler("LMS", ("k_lms",)),
        Sampler("Heun", ("k_heun",), (_SO,)),
        Sampler("DPM2", ("k_dpm_2",), (_DN, _SO)),
        Sampler("DPM2 a", ("k_dpm_2_a",), (_DN, _UE, _SO)),
        Sampler("DPM++ 2S a", ("k_dpmpp_2s_a",), (_UE, _SO)),
        Sampler("DPM++ 2M", ("k_dpmpp_2m",)),
        Sampler("DPM++ SDE", ("k_dpmpp_sde",), (_SO, _BN)),
        Sampler("DPM++ 2M SDE", ("k_dpmpp_2m_sde_ka",), (_BN,)),
        Sampler("DPM++ 2M SDE Heun", ("k_dpmpp_2m_sde_heun",), (_BN, _HEUN)),
        Sampler("DPM++ 2M SDE Heun Karras", ("k_dpmpp_2m_sde_heun_ka",), (_KA, _BN, _HEUN)),
        Sampler("DPM++ 2M SDE Heun Exponential", ("k_dpmpp_2m_sde_heun_exp",), (_EX, _BN, _HEUN)),
        Sampler("DPM++ 3M SDE", ("k_dpmpp_3m_sde",), (_DN, _BN)),
        Sampler("DPM++ 3M SDE Karras", ("k_dpmpp_3m_sde_ka",), (_KA, _DN, _BN)),
        Sampler("DPM++ 3M SDE Exponential", ("k_dpmpp_3m_sde_exp",), (_EX, _DN, _BN)),
        Sampler("DPM fast", ("k_dpm_fast",), (_UE,)),
        Sampler("DPM adaptive", ("k_dpm_ad",), (_UE,)),
        Sampler("LMS Karras", ("k_lms_ka",), (_KA,)),
        Sampler("DPM2 Karras", ("k_dpm_2_ka",), (_KA, _DN, _UE, _SO)),
        Sampler("DPM2 a Karras", ("k_dpm_2_a_ka",), (_KA, _DN, _UE, _SO)),
        Sampler("DPM++ 2S a Karras", ("k_dpmpp_2s_a_ka",), (_KA, _UE, _SO)),
        Sampler("Restart", ("restart",), (_KA, _SO)),
        Sampler("DDIM", ("ddim",)),
        Sampler("PLMS", ("plms",)),
        Sampler("UniPC", ("unipc",)),
        Sampler("LCM", ("k_lcm",)),
    ),
    # Not served (no /schedulers before 1.9.1); kept so labels resolve the same way.
    schedulers=_V110.schedulers[:4],
)

# -- Forge: modules_forge/alter_samplers.py and its extra schedulers -------------------------
FORGE = replace(
    _V110,
    version="f2.0.1v1.10.1-previous-669-gdfdcbab6",
    samplers=(
        *_V110.samplers,
        Sampler("HeunPP2", ("heunpp2",)),
        Sampler("IPNDM", ("ipndm",)),
        Sampler("IPNDM_V", ("ipndm_v",)),
        Sampler("DEIS", ("deis",)),
        Sampler("DDPM", ("ddpm",)),
    ),
    schedulers=(
        *_V110.schedulers,
        Scheduler("turbo", "Turbo", need_inner_model=True),
        Scheduler("align_your_steps_GITS", "Align Your Steps GITS"),
        Scheduler("align_your_steps_11", "Align Your Steps 11"),
        Scheduler("align_your_steps_32", "Align Your Steps 32"),
    ),
)


# -- SD.Next: diffusers schedulers with their config (sd_samplers_diffusers.config) ----------
def _sd(name: str, cls: str, **config: object) -> Sampler:
    # SD.Next's SamplerData alias lists are empty; matching is by case-insensitive name.
    return Sampler(name, (), tuple(config.items()), cls)


_KS = {"use_karras_sigmas": False}
SDNEXT = replace(
    _V110,
    version="058a7f0c",  # infotext `Version:` is the git hash; info has no version key
    samplers=(
        _sd("Default", "Default"),  # the model's own scheduler; accepted, not listed
        _sd("UniPC", "UniPCMultistepScheduler", solver_order=2, predict_x0="bh2"),
        _sd("DDIM", "DDIMScheduler", clip_sample=False, timestep_spacing="leading"),
        _sd("Euler", "EulerDiscreteScheduler", interpolation_type="linear", **_KS),
        _sd("Euler a", "EulerAncestralDiscreteScheduler", rescale_betas_zero_snr=False),
        _sd("Euler SGM", "EulerDiscreteScheduler", timestep_spacing="trailing"),
        _sd("Euler EDM", "EDMEulerScheduler"),
        _sd("DPM++ 2M", "DPMSolverMultistepScheduler", algorithm_type="dpmsolver++", **_KS),
        _sd("DPM++ 1S", "DPMSolverSinglestepScheduler", algorithm_type="dpmsolver++", **_KS),
        _sd("DPM++ 2M SDE", "DPMSolverMultistepScheduler", algorithm_type="sde-dpmsolver++"),
        _sd("DPM SDE", "DPMSolverSDEScheduler", **_KS),
        _sd("Heun", "HeunDiscreteScheduler", **_KS),
        _sd("LMSD", "LMSDiscreteScheduler", **_KS),
        _sd("KDPM2", "KDPM2DiscreteScheduler", steps_offset=0),
        _sd("KDPM2 a", "KDPM2AncestralDiscreteScheduler", steps_offset=0),
        _sd("DEIS", "DEISMultistepScheduler", solver_order=2),
        _sd("PNDM", "PNDMScheduler", skip_prk_steps=False),
        _sd("DDPM", "DDPMScheduler", variance_type="fixed_small"),
        _sd("LCM", "LCMScheduler", beta_schedule="scaled_linear"),
        _sd("TCD", "TCDScheduler", beta_schedule="scaled_linear"),
    ),
    schedulers=(),
)

# SD.Next's sigma schedules (option `schedulers_sigma`, "Sigma algorithm"); "default" is the
# sampler's own. Other values are ignored by the mock (SD.Next's handling is not verified).
SDNEXT_SIGMAS = ("default", "karras", "exponential", "polyexponential")
