"""A planned payload (the A1111-shaped fields of the plan) as the ComfyUI graphs to post.

Entry point: `Translation.graphs(payload, prompt_ids) -> list[graph]`: one graph per `n_iter`
(seeds s, s+1, ...; `batch_size` images each, which ComfyUI draws from one noise generator, so
the same seed never makes the same picture as on A1111: comfyui-api.md C11). Without a workflow
it is the built-in text-to-image graph of comfyui-api.md C9 (CLIPSetLastLayer for clip skip);
with one, the user's graph with the job's values put in (usergraph.py). The worker and the
decoder ask the translation where the seed, the checkpoint and the saved images are, never a
node id of their own.

Every graph carries a fresh `filename_prefix` (`sdbatch/<prompt_id>/img`): the cache trap
(C12) replays an identical prompt with OLD file names and writes nothing, which a deleted
output file turns into a 404 and a careless client into a stale image. With a prefix of its
own SaveImage always runs and writes the file this prompt names, while the loader, the text
encoders and an identical sampler are still served from the cache (the pixels are the same).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from sdbatch.backends.comfyui.names import (
    CHECKPOINT_SETTING,
    CLIP_SKIP_SETTING,
    setting,
    to_comfy,
)
from sdbatch.backends.comfyui.usergraph import UserGraph
from sdbatch.job.workflow import Workflow

# The built-in graph's node ids (C9), so history and the PNG chunk read as in ComfyUI's docs.
CKPT, POS, NEG, LATENT, SAMPLER, DECODE, SAVE, CLIP = "4", "6", "7", "5", "3", "8", "9", "10"


@dataclass(frozen=True)
class Translation:
    """What one server needs: its sampler and scheduler lists, the checkpoint for payloads
    naming none (the first the server lists: ComfyUI has no "loaded" model), and the user's
    workflow if the job has one."""

    samplers: Collection[str]
    schedulers: Collection[str]
    default_checkpoint: str
    workflow: Workflow | None = None

    @functools.cached_property
    def user(self) -> UserGraph | None:
        if self.workflow is None:
            return None
        return UserGraph(self.workflow, self.samplers, self.schedulers)

    @property
    def save_node(self) -> str:
        """The node whose images are the prompt's images."""
        return self.user.save if self.user else SAVE

    @property
    def sampler_node(self) -> str:
        return self.user.sampler if self.user else SAMPLER

    def checkpoint(self, graph: Mapping[str, Any]) -> str | None:
        if self.user:
            return self.user.checkpoint(graph)
        return str(graph[CKPT]["inputs"]["ckpt_name"])

    def payload_checkpoint(self, payload: Mapping[str, Any]) -> str | None:
        """The checkpoint a payload will load, without building its graph."""
        asked = setting(payload, CHECKPOINT_SETTING)
        if asked is not None:
            return str(asked)
        if self.user:
            return self.user.checkpoint(self.user.workflow.graph)
        return self.default_checkpoint

    def seed(self, graph: Mapping[str, Any]) -> int:
        return self.user.seed(graph) if self.user else int(graph[SAMPLER]["inputs"]["seed"])

    def batch(self, graph: Mapping[str, Any]) -> int:
        """The images one prompt makes, as the plan counts them (`batch_size`)."""
        place = self.user.bindings.get("batch_size") if self.user else (LATENT, "batch_size")
        value = graph[place[0]]["inputs"].get(place[1], 1) if place else 1
        return value if isinstance(value, int) and value > 0 else 1

    def asked_size(self, graph: Mapping[str, Any]) -> tuple[int, int] | None:
        """(width, height) the saved images must have, None when the graph does not say.
        ComfyUI's latent is a multiple of 8: a size of 100 makes 96 pixels (C9)."""
        if self.user:
            return self.user.asked_size(graph)
        latent = graph[LATENT]["inputs"]
        return int(latent["width"]) // 8 * 8, int(latent["height"]) // 8 * 8

    def sampler_pair(self, payload: Mapping[str, Any]) -> tuple[str, str]:
        return to_comfy(
            payload.get("sampler_name"), payload.get("scheduler"), self.samplers, self.schedulers
        )

    def graph(self, payload: Mapping[str, Any], seed: int, prompt_id: str) -> dict[str, Any]:
        """The graph for one prompt: the user's workflow or the built-in text-to-image one."""
        if self.user:
            return self.user.graph(payload, seed, prompt_id)
        sampler, scheduler = self.sampler_pair(payload)
        clip: list[Any] = [CKPT, 1]
        graph: dict[str, Any] = {
            CKPT: _node(
                "CheckpointLoaderSimple",
                ckpt_name=setting(payload, CHECKPOINT_SETTING) or self.default_checkpoint,
            ),
        }
        skip = setting(payload, CLIP_SKIP_SETTING)
        if isinstance(skip, int) and skip > 1:  # 1 is "the last layer": no node needed
            graph[CLIP] = _node("CLIPSetLastLayer", clip=[CKPT, 1], stop_at_clip_layer=-skip)
            clip = [CLIP, 0]
        graph[POS] = _node("CLIPTextEncode", text=payload.get("prompt", ""), clip=clip)
        graph[NEG] = _node("CLIPTextEncode", text=payload.get("negative_prompt", ""), clip=clip)
        graph[LATENT] = _node(
            "EmptyLatentImage",
            width=payload.get("width", 512),
            height=payload.get("height", 512),
            batch_size=payload.get("batch_size", 1),
        )
        graph[SAMPLER] = _node(
            "KSampler",
            model=[CKPT, 0],
            positive=[POS, 0],
            negative=[NEG, 0],
            latent_image=[LATENT, 0],
            seed=seed,
            steps=payload.get("steps", 20),
            cfg=payload.get("cfg_scale", 7.0),
            sampler_name=sampler,
            scheduler=scheduler,
            denoise=1.0,
        )
        graph[DECODE] = _node("VAEDecode", samples=[SAMPLER, 0], vae=[CKPT, 2])
        graph[SAVE] = _node(
            "SaveImage", images=[DECODE, 0], filename_prefix=f"sdbatch/{prompt_id}/img"
        )
        return graph

    def graphs(self, payload: Mapping[str, Any], prompt_ids: list[str]) -> list[dict[str, Any]]:
        """One graph per n_iter, seeds s, s+1, ... (len(prompt_ids) == n_iter)."""
        seed = int(payload.get("seed", 0))
        return [self.graph(payload, seed + i, pid) for i, pid in enumerate(prompt_ids)]


def _node(class_type: str, **inputs: Any) -> dict[str, Any]:
    return {"class_type": class_type, "inputs": copy.deepcopy(inputs)}


def n_iter(payload: Mapping[str, Any]) -> int:
    value = payload.get("n_iter", 1)
    return value if isinstance(value, int) and value > 0 else 1
