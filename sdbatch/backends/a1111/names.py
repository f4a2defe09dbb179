"""Names the webuis give schedules and checkpoints, and the few that sdbatch must know itself.

Shared by `serverfacts`, `preflight` and `postcheck`; no entry point of its own. The built-in
tables are for what a server does not list: a webui without `/sdapi/v1/schedulers` still
spells the v1.10 labels in its combined sampler names, SD.Next takes a sigma algorithm instead
of a scheduler, and `postcheck` without facts still knows v1.10's default schedules.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

AUTOMATIC = "Automatic"


@dataclass(frozen=True)
class Scheduler:
    name: str  # "sgm_uniform"
    label: str  # "SGM Uniform": what infotexts and combined sampler names spell
    aliases: tuple[str, ...] = ()  # "SGMUniform"


def _s(name: str, label: str, *aliases: str) -> Scheduler:
    return Scheduler(name, label, aliases)


# sd_schedulers.schedulers of A1111 v1.10.1 (a1111-api.md §5).
V110_SCHEDULERS = (
    _s("automatic", AUTOMATIC),
    _s("uniform", "Uniform"),
    _s("karras", "Karras"),
    _s("exponential", "Exponential"),
    _s("polyexponential", "Polyexponential"),
    _s("sgm_uniform", "SGM Uniform", "SGMUniform"),
    _s("kl_optimal", "KL Optimal"),
    _s("align_your_steps", "Align Your Steps"),
    _s("simple", "Simple"),
    _s("normal", "Normal"),
    _s("ddim", "DDIM"),
    _s("beta", "Beta"),
)
# The `scheduler` option of v1.10's samplers: what Automatic means, and what the webui calls
# Automatic again when a client names it (convert_automatic).
V110_DEFAULTS: Mapping[str, str] = {
    **dict.fromkeys(("DPM++ 2M", "DPM++ SDE", "DPM++ 2S a", "Restart"), "Karras"),
    **dict.fromkeys(("DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 3M SDE"), "Exponential"),
}
# SD.Next has no scheduler field; a per-request `schedulers_sigma` picks the sigma algorithm
# of the diffusers sampler (vladmandic/sdnext modules/processing_class.py; choices from the
# `schedulers_sigma` option: default, karras, exponential, polyexponential).
SDNEXT_SIGMA_FIELD = "schedulers_sigma"
SDNEXT_SIGMAS: Mapping[str, str] = {
    "Karras": "karras",
    "Exponential": "exponential",
    "Polyexponential": "polyexponential",
}
SAME_SAMPLER = frozenset({"Use same sampler", "Same as primary"})  # A1111 UI, SD.Next
SAME_CHECKPOINT = "Use same checkpoint"


def label_index(schedulers: Iterable[Scheduler]) -> dict[str, str]:
    """name, label and alias -> label. A1111's `scheduler` field takes names and labels only;
    preflight also accepts the aliases and sends the label instead."""
    index: dict[str, str] = {}
    for s in schedulers:
        index.update(dict.fromkeys((*s.aliases, s.name, s.label), s.label))
    return index


def schedule_key(value: str | None) -> str:
    """One spelling for a name or label ("SGM Uniform" ~ "sgm_uniform"), "automatic" for none."""
    return (value or AUTOMATIC).strip().lower().replace(" ", "_")


@dataclass(frozen=True)
class Checkpoint:
    title: str  # "v1-5-pruned-emaonly.safetensors [6ce0161689]": the canonical form sent
    model_name: str
    hash: str | None  # 10-hex short hash; null until the webui has hashed the file
    sha256: str | None
    filename: str  # the server's own path

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> Checkpoint:
        return cls(
            str(item["title"]),
            str(item.get("model_name") or ""),
            item.get("hash") or None,
            item.get("sha256") or None,
            str(item.get("filename") or ""),
        )

    @property
    def name(self) -> str:
        """The title without its ` [hash]`: the file's path relative to the models dir."""
        suffix = f" [{self.hash}]"
        return (
            self.title[: -len(suffix)] if self.hash and self.title.endswith(suffix) else self.title
        )

    @property
    def aliases(self) -> frozenset[str]:
        """Every spelling `sd_models.CheckpointInfo.ids` accepts (a1111-api.md §7), except the
        legacy 8-hex hash that only the file itself could give."""
        base = os.path.basename(self.filename.replace("\\", "/")) or os.path.basename(self.name)
        stem = os.path.splitext(base)[0]
        names = {self.title, self.name, self.model_name, base, stem, os.path.splitext(self.name)[0]}
        for digest in (self.hash, self.sha256):
            if digest:
                names |= {digest, f"{self.name} [{digest}]", f"{self.model_name} [{digest}]"}
        return frozenset(n for n in names if n)
