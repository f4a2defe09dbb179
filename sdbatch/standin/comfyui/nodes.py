"""What each node class of the stand-in does, without a model: values that carry a key.

A node returns a tuple of outputs, as the real ones do. Models, CLIPs and conditionings are
keys naming what made them; a latent holds its size, batch and a key; an image batch holds one
key per picture. A picture's pixels are drawn from its key only when it is saved (images.py),
so the same graph and seed always give the same PNG, and the two images of a batch differ (one
sampler run for the whole batch, as the real one). The sampler's steps are where the stand-in
spends `step_delay` and where an interrupt lands (`Step` callback).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sdbatch.standin.comfyui.catalog import Catalog


class NodeFailure(Exception):
    """A node failed at run time; the stand-in reports it as `execution_error`."""

    def __init__(self, exception_type: str, message: str) -> None:
        super().__init__(message)
        self.exception_type, self.message = exception_type, message


@dataclass(frozen=True)
class Latent:
    width: int  # in pixels, a multiple of 8 as the real latent (size // 8)
    height: int
    keys: tuple[str, ...]  # one per batch item


@dataclass(frozen=True)
class Pictures:
    width: int
    height: int
    keys: tuple[str, ...]


def key(*parts: Any) -> str:
    return hashlib.sha256(repr(parts).encode("utf-8")).hexdigest()[:32]


# step(done, total) sleeps and raises Interrupted; `save` writes pictures (output or temp).
Step = Callable[[int, int], None]
Save = Callable[[Pictures, str, str], list[dict[str, str]]]


@dataclass(frozen=True)
class Context:
    catalog: Catalog
    step: Step
    save: Save
    load_input: Callable[[str], Pictures]
    before_sampling: Callable[[], None]  # where an injected runtime error is raised


def run(class_type: str, inputs: Mapping[str, Any], ctx: Context) -> tuple[tuple[Any, ...], Any]:
    """(outputs, ui output or None) of one node; `inputs` have their links resolved."""
    i = inputs
    if class_type == "CheckpointLoaderSimple":
        name = i["ckpt_name"]
        if name in ctx.catalog.broken:
            raise NodeFailure(*ctx.catalog.broken[name])
        return (key("model", name), key("clip", name), key("vae", name)), None
    if class_type == "CLIPSetLastLayer":
        return (key("clip", i["clip"], i["stop_at_clip_layer"]),), None
    if class_type == "LoraLoader":
        lora = (i["lora_name"], i["strength_model"], i["strength_clip"])
        return (key("model", i["model"], *lora), key("clip", i["clip"], *lora)), None
    if class_type == "CLIPTextEncode":
        return (key("cond", i["clip"], i["text"]),), None
    if class_type == "EmptyLatentImage":
        w, h, n = int(i["width"]) // 8 * 8, int(i["height"]) // 8 * 8, int(i["batch_size"])
        if w * h * n > ctx.catalog.max_pixels:
            raise NodeFailure("torch.OutOfMemoryError", f"{n}x{w}x{h} does not fit (stand-in)")
        return (Latent(w, h, tuple(key("empty", w, h) for _ in range(n))),), None
    if class_type in ("KSampler", "KSamplerAdvanced"):
        ctx.before_sampling()
        return (sample(class_type, i, ctx.step),), None
    if class_type == "VAEDecode":
        lat: Latent = i["samples"]
        return (Pictures(lat.width, lat.height, tuple(key(k, i["vae"]) for k in lat.keys)),), None
    if class_type == "VAEEncode":
        pics: Pictures = i["pixels"]
        w, h = pics.width // 8 * 8, pics.height // 8 * 8
        return (Latent(w, h, tuple(key("enc", k, i["vae"]) for k in pics.keys)),), None
    if class_type == "LoadImage":
        loaded = ctx.load_input(i["image"])
        return (loaded, key("mask", loaded.keys)), None
    if class_type == "SaveImage":
        return (), {"images": ctx.save(i["images"], str(i["filename_prefix"]), "output")}
    if class_type == "PreviewImage":
        return (), {"images": ctx.save(i["images"], "ComfyUI", "temp")}
    raise NodeFailure("NotImplementedError", f"the stand-in cannot run {class_type}")


def sample(class_type: str, i: Mapping[str, Any], step: Step) -> Latent:
    """One sampler run for the whole batch: batch item b of seed s is its own picture, and not
    the picture of seed s + b (comfyui-api.md C11)."""
    latent: Latent = i["latent_image"]
    advanced = class_type == "KSamplerAdvanced"
    seed = i["noise_seed"] if advanced else i["seed"]
    steps = int(i["steps"])
    if advanced:
        steps = max(0, min(int(i["end_at_step"]), steps) - int(i["start_at_step"]))
    for done in range(1, steps + 1):
        step(done, steps)
    recipe = (
        i["model"],
        i["positive"],
        i["negative"],
        seed,
        i["steps"],
        i["cfg"],
        i["sampler_name"],
        i["scheduler"],
        i.get("denoise", 1.0),
        i.get("add_noise"),
    )
    keys = tuple(key("sample", k, b, *recipe) for b, k in enumerate(latent.keys))
    return Latent(latent.width, latent.height, keys)
