"""What one webui has installed and which dialect it speaks, read once before a run.

Entry point: `inspect_server(url, session) -> ServerFacts`. The lead's CLI calls it (and then
`preflight.preflight`) before the first txt2img of a run and in `sdbatch check`; the writer
may hand the facts to `postcheck.compare`. Flavours (a1111-api.md §5, §8): SD.Next answers
`/sdapi/v1/version`, Forge `/sdapi/v1/sd-modules`; an A1111 without `/sdapi/v1/schedulers`
whose sampler list holds combined names ("DPM++ 2M Karras") is v1.8 or older.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import requests

from sdbatch.backends.a1111.api import REQUIRED, get_json, reading
from sdbatch.backends.a1111.installed import Installed
from sdbatch.backends.a1111.names import (
    AUTOMATIC,
    V110_SCHEDULERS,
    Checkpoint,
    Scheduler,
    label_index,
)


@dataclass(frozen=True)
class ServerFacts:
    url: str
    flavour: str  # "a1111" | "forge" | "sdnext"
    has_scheduler_field: bool  # False on A1111 <= v1.8 and on SD.Next
    sampler_names: tuple[str, ...]  # as the server spells them
    sampler_aliases: Mapping[str, str]  # alias -> name (A1111's `k_euler`)
    sampler_defaults: Mapping[str, str]  # name -> label of its default schedule ("Karras")
    case_insensitive: bool  # SD.Next matches sampler names and aliases ignoring case
    schedulers: tuple[Scheduler, ...]
    checkpoints: tuple[Checkpoint, ...]
    upscalers: tuple[str, ...]
    latent_modes: tuple[str, ...]
    options: Mapping[str, Any]
    # What the server says it is, when it says so before a txt2img (SD.Next's /version);
    # A1111 and Forge only report theirs in a response's `info.version`.
    version: str | None = None
    # LoRAs, embeddings, styles and hypernetworks, read only if the job names some; None for
    # facts not read from a server (then those names go unchecked).
    installed: Installed | None = field(default=None, compare=False, repr=False)

    def sampler(self, name: str) -> str | None:
        """The server's spelling of a sampler name or alias, None when it has no such one."""
        if name in self.sampler_names:
            return name
        if name in self.sampler_aliases:
            return self.sampler_aliases[name]
        if self.case_insensitive:
            hit = self._folded_samplers.get(name.casefold())
            return None if hit is None else self.sampler(hit)
        return None

    def scheduler(self, name: str) -> str | None:
        """The label ("Karras") of a scheduler name, label or alias; None if unknown."""
        return self._scheduler_labels.get(name)

    # The post-check asks these for every image: the indexes are built once per server.
    @functools.cached_property
    def _folded_samplers(self) -> dict[str, str]:
        return {n.casefold(): n for n in (*self.sampler_names, *self.sampler_aliases)}

    @functools.cached_property
    def _scheduler_labels(self) -> dict[str, str]:
        return label_index(self.schedulers)

    def checkpoint(self, alias: str) -> Checkpoint | None:
        return next((c for c in self.checkpoints if alias in c.aliases), None)

    @property
    def current_checkpoint(self) -> str | None:
        value = self.options.get("sd_model_checkpoint")
        return None if value is None else str(value)

    @property
    def samples_format(self) -> str:
        return str(self.options.get("samples_format") or "png")


def inspect_server(url: str, session: requests.Session, *, timeout: float = 30) -> ServerFacts:
    """Read every list preflight needs, one GET each (LoRAs, embeddings, styles and
    hypernetworks later, by `installed`, if the job names some). Raises
    `ServerUnreachableError` when the webui cannot be reached and `ServerError` when it answers
    a required list with an error or with something not shaped as a webui's list."""

    def get(path: str, *, optional: bool = False) -> Any:
        missing = None if optional else REQUIRED
        return get_json(session, url, path, timeout=timeout, missing=missing)

    about = get("version", optional=True)
    sdnext = about is not None
    forge = not sdnext and get("sd-modules", optional=True) is not None
    samplers: Any = get("samplers") or []
    schedulers = None if sdnext else get("schedulers", optional=True)
    with reading(url, "samplers"):
        names = tuple(str(s["name"]) for s in samplers)
        aliases = {str(a): str(s["name"]) for s in samplers for a in s.get("aliases") or ()}
    legacy = not sdnext and schedulers is None and any(n.endswith(" Karras") for n in names)
    if schedulers is not None:
        with reading(url, "schedulers"):
            known = tuple(
                Scheduler(str(s["name"]), str(s["label"]), tuple(map(str, s.get("aliases") or ())))
                for s in schedulers
            )
    else:
        # v1.9.0 (a field, no list) and legacy combined names both spell the v1.10 labels.
        known = V110_SCHEDULERS
    labels = label_index(known)
    defaults = {}
    with reading(url, "samplers"):
        for s in samplers:
            default = (s.get("options") or {}).get("scheduler")
            if isinstance(default, str) and default in labels:
                defaults[str(s["name"])] = labels[default]
    models, upscalers, modes, options = (
        get(path) or () for path in ("sd-models", "upscalers", "latent-upscale-modes", "options")
    )
    with reading(url, "sd-models"):
        checkpoints = tuple(Checkpoint.from_json(m) for m in models)
    with reading(url, "upscalers"):
        upscaler_names = tuple(str(u["name"]) for u in upscalers)
    with reading(url, "latent-upscale-modes"):
        latent_modes = tuple(str(m["name"]) for m in modes)
    with reading(url, "options"):
        settings = MappingProxyType(dict(options))
    return ServerFacts(
        url=url,
        flavour="sdnext" if sdnext else "forge" if forge else "a1111",
        has_scheduler_field=not (sdnext or legacy),
        sampler_names=names,
        sampler_aliases=MappingProxyType(aliases),
        sampler_defaults=MappingProxyType(defaults),
        case_insensitive=sdnext,
        schedulers=known,
        checkpoints=checkpoints,
        upscalers=upscaler_names,
        latent_modes=latent_modes,
        options=settings,
        version=_version(about),
        installed=Installed(url, session, timeout=timeout),
    )


def _version(about: Any) -> str | None:
    if isinstance(about, Mapping):
        words = about.get("version") or f"{about.get('app', '')} {about.get('hash', '')}"
        return str(words).strip() or None
    return None if about is None else str(about)


__all__ = ["AUTOMATIC", "Checkpoint", "Scheduler", "ServerFacts", "inspect_server"]
