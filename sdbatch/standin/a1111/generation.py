"""From a validated request to what the webui would generate: sampler, seeds, model, infotexts.

Follows `Api.text2imgapi` and `process_images_inner` of v1.10.1 (a1111-api.md §2, §3, §5, §7).
Styles, LoRA and embedding hashes come from `extranets`. Deliberately not modelled: the
`infotext` request field (accepted, not applied) and hires-fix job doubling in /progress.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sdbatch.standin.a1111 import extranets
from sdbatch.standin.a1111.behaviours import Behaviour
from sdbatch.standin.a1111.catalog import Catalog, Checkpoint
from sdbatch.standin.a1111.errors import http_exception, webui_exception

MAX_SEED = 4294967294  # get_fixed_seed: random.randrange(4294967294)


def check_scripts(req: Mapping[str, Any], catalog: Catalog) -> None:
    """Api.get_selectable_script / init_script_args: unknown titles are a 422 HTTPException."""
    name = req["script_name"]
    if name and name.lower() not in catalog.selectable_scripts:
        raise http_exception(422, f"Script '{name}' not found")
    for title in req["alwayson_scripts"]:
        if str(title).lower() in catalog.selectable_scripts:
            raise http_exception(
                422, "Cannot have a selectable script in the always on scripts params"
            )
        if str(title).lower() not in catalog.alwayson_scripts:
            raise http_exception(422, f"Script '{title}' not found")  # e11


def fixed_seed(seed: int | None, rng: random.Random) -> int:
    return rng.randrange(MAX_SEED) if seed is None or seed == -1 else seed


@dataclass(frozen=True)
class Job:
    """One txt2img job as process_images sees it, with everything resolved."""

    req: Mapping[str, Any]
    opts: Mapping[str, Any]
    checkpoint: Checkpoint
    sampler: str
    schedule: str | None
    seeds: tuple[int, ...]
    subseeds: tuple[int, ...]
    size: tuple[int, int]  # of the returned images (the hires target with enable_hr)
    timestamp: str
    behaviour: Behaviour
    extra: dict[str, Any] = field(default_factory=dict)
    # The prompts with styles merged, for all_prompts and the infotext (info.prompt: as asked).
    styled: Mapping[str, str] = field(default_factory=dict)

    def text(self, key: str) -> Any:
        return self.styled.get(key, self.req[key])

    @property
    def version(self) -> str:
        return self.behaviour.version

    @property
    def restore_faces(self) -> bool:
        value = self.req["restore_faces"]
        return bool(self.opts["face_restoration"] if value is None else value)

    @property
    def clip_skip(self) -> int:
        return int(self.opts["CLIP_stop_at_last_layers"])

    @property
    def total(self) -> int:
        return len(self.seeds)


def plan_job(
    req: Mapping[str, Any],
    opts: Mapping[str, Any],
    checkpoint: Checkpoint,
    behaviour: Behaviour,
    rng: random.Random,
    timestamp: str,
) -> Job:
    resolved = behaviour.resolve(req, behaviour.catalog)
    n = max(0, req["batch_size"] or 1) * max(0, req["n_iter"] or 1)
    seed = fixed_seed(req["seed"], rng)
    subseed = fixed_seed(req["subseed"], rng)
    variation = (req["subseed_strength"] or 0) != 0
    seeds = tuple(seed + (0 if variation else i) for i in range(n))
    extra: dict[str, Any] = dict(resolved.extra)
    size = (req["width"], req["height"])
    if req.get("enable_hr"):  # img2img has no hires fields
        size = _hires(req, behaviour.catalog, extra)
    # The latent is size // 8: a width of 65 gives a 64-pixel image, while info and the
    # infotext still say 65 (OBSERVED 5).
    size = (size[0] // 8 * 8, size[1] // 8 * 8)
    styled = extranets.styled(req, behaviour.catalog)
    extra.update(extranets.infotext_params({**req, **styled}, opts, behaviour.catalog, checkpoint))
    return Job(
        req,
        opts,
        checkpoint,
        resolved.sampler,
        resolved.schedule,
        seeds,
        tuple(subseed + i for i in range(n)),
        size,
        timestamp,
        behaviour,
        extra,
        styled,
    )


def _hires(req: Mapping[str, Any], catalog: Catalog, extra: dict[str, Any]) -> tuple[int, int]:
    strength = req["denoising_strength"]
    if strength is None:  # setup_img2img_steps compares None > 0
        raise webui_exception(
            "TypeError", "'>' not supported between instances of 'NoneType' and 'int'"
        )
    upscaler = req["hr_upscaler"] or "Latent"
    if upscaler not in catalog.latent_upscale_modes + catalog.upscalers:
        raise webui_exception("Exception", f"could not find upscaler named {upscaler}")
    w, h, rx, ry = req["width"], req["height"], req["hr_resize_x"], req["hr_resize_y"]
    extra["Denoising strength"] = strength
    # Recorded as None when the second pass repeats the first (e08): in `info`, not infotext.
    for key, name, first in (
        ("Hires prompt", "hr_prompt", "prompt"),
        ("Hires negative prompt", "hr_negative_prompt", "negative_prompt"),
        ("Hires schedule type", "hr_scheduler", "scheduler"),
    ):
        value = req.get(name)
        extra[key] = value if value and value != req.get(first) else None
    if rx == 0 and ry == 0:
        extra["Hires upscale"] = req["hr_scale"]
        size = (int(w * req["hr_scale"]), int(h * req["hr_scale"]))
    else:
        extra["Hires resize"] = f"{rx}x{ry}"
        size = (rx or ry * w // h, ry or rx * h // w)
    if req["hr_second_pass_steps"]:
        extra["Hires steps"] = req["hr_second_pass_steps"]
    if req["hr_upscaler"]:  # the Latent default is not written (e08)
        extra["Hires upscaler"] = upscaler
    hr_sampler = req.get("hr_sampler_name")
    if hr_sampler and hr_sampler != req["sampler_name"] and catalog.sampler(hr_sampler) is None:
        # sd_samplers.create_sampler; the UI's "Use same sampler" is no name either (e07).
        raise webui_exception("AssertionError", f"bad sampler name: {hr_sampler}")
    return size


def _ensd(job: Job) -> Any:
    """The eta noise seed delta, recorded only for a sampler that uses it."""
    delta = job.opts.get("eta_noise_seed_delta") or 0
    sampler = job.behaviour.catalog.sampler(job.sampler)
    uses = sampler is not None and dict(sampler.options).get("uses_ensd") == "True"
    return int(delta) if delta and uses else None


def _quote(value: Any) -> Any:
    text = str(value)
    if "," not in text and "\n" not in text and ":" not in text:
        return value
    return json.dumps(text, ensure_ascii=False)


def infotext(job: Job, index: int) -> str:
    """create_infotext for image `index` (for the grid: index 0 with the main prompt)."""
    req, opts = job.req, job.opts
    variation = (req["subseed_strength"] or 0) != 0
    resize_w, resize_h = req["seed_resize_from_w"] or -1, req["seed_resize_from_h"] or -1
    params: dict[str, Any] = {
        "Steps": req["steps"],
        "Sampler": job.sampler,
        # p.scheduler, corrected to Automatic when unknown (OBSERVED 4); the sampler's own
        # schedule, when it records one, wins. Only webuis with a `scheduler` field write it.
        "Schedule type": job.extra.get("Schedule type")
        or ("Automatic" if job.behaviour.schedule_field == "scheduler" else None),
        "CFG scale": req["cfg_scale"],
        "Seed": job.seeds[index],
        "Face restoration": opts["face_restoration_model"] if job.restore_faces else None,
        "Size": f"{req['width']}x{req['height']}",
        "Model hash": job.checkpoint.shorthash if opts["add_model_hash_to_info"] else None,
        "Model": job.checkpoint.model_name if opts["add_model_name_to_info"] else None,
        "Variation seed": job.subseeds[index] if variation else None,
        "Variation seed strength": req["subseed_strength"] if variation else None,
        "Seed resize from": (f"{resize_w}x{resize_h}" if resize_w > 0 and resize_h > 0 else None),
        "Denoising strength": job.extra.get("Denoising strength"),
        "Clip skip": job.clip_skip if job.clip_skip > 1 else None,
        "ENSD": _ensd(job),
        "Tiling": "True" if req["tiling"] else None,
        **{k: v for k, v in job.extra.items() if k not in ("Schedule type", "Denoising strength")},
        "Version": job.version if opts["add_version_to_infotext"] else None,
    }
    line = ", ".join(
        k if k == v else f"{k}: {_quote(v)}" for k, v in params.items() if v is not None
    )
    negative = job.text("negative_prompt")
    negative_text = f"\nNegative prompt: {negative}" if negative else ""
    return f"{job.text('prompt')}{negative_text}\n{line}".strip()


def info(job: Job, infotexts: list[str], index_of_first_image: int) -> str:
    """Processed.js(): a JSON *string*, default separators, ASCII-escaped, keys in this order.

    The all_* lists cover the whole job even after an interrupt (they are computed up front);
    `infotexts` has one entry per returned image.
    """
    req = job.req
    n = job.total
    obj = {
        "prompt": req["prompt"],
        "all_prompts": [job.text("prompt")] * n,
        "negative_prompt": req["negative_prompt"],
        "all_negative_prompts": [job.text("negative_prompt")] * n,
        "seed": job.seeds[0] if n else None,
        "all_seeds": list(job.seeds),
        "subseed": job.subseeds[0] if n else None,
        "all_subseeds": list(job.subseeds),
        "subseed_strength": req["subseed_strength"],
        "width": req["width"],
        "height": req["height"],
        "sampler_name": job.sampler,
        "cfg_scale": req["cfg_scale"],
        "steps": req["steps"],
        "batch_size": req["batch_size"],
        "restore_faces": job.restore_faces,
        "face_restoration_model": job.opts["face_restoration_model"] if job.restore_faces else None,
        "sd_model_name": job.checkpoint.model_name,
        "sd_model_hash": job.checkpoint.shorthash,
        "sd_vae_name": None,
        "sd_vae_hash": None,
        "seed_resize_from_w": req["seed_resize_from_w"],
        "seed_resize_from_h": req["seed_resize_from_h"],
        "denoising_strength": req["denoising_strength"],
        "extra_generation_params": job.extra,
        "index_of_first_image": index_of_first_image,
        "infotexts": infotexts,
        "styles": req["styles"] or [],
        "job_timestamp": job.timestamp,
        "clip_skip": job.clip_skip,
        "is_using_inpainting_conditioning": False,
        "version": job.version,
    }
    for key in job.behaviour.info_drop:
        del obj[key]
    for key, source in job.behaviour.info_add:
        obj[key] = None if source is None else req[source]
    return json.dumps(obj, default=lambda o: None)
