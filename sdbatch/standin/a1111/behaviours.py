"""The webuis the stand-in can pose as: one frozen `Behaviour` of data and small strategies each.

Everything that differs between A1111 v1.10 / v1.9 / v1.8, Forge and SD.Next is in this table
(a1111-api.md §3, §5, §8), so the rest of the mock asks its behaviour instead of branching on a
name: the request model and its pydantic flavour, sampler resolution, error rendering, the
`info` keys, and which routes exist.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sdbatch.standin.a1111 import fields, sampling, styles, variants
from sdbatch.standin.a1111.catalog import Catalog

Listing = Callable[[Catalog], list[dict[str, Any]]]


@dataclass(frozen=True)
class Behaviour:
    name: str
    catalog: Catalog
    fields: tuple[fields.Field, ...]
    resolve: sampling.Resolver
    errors: styles.ErrorStyle = styles.A1111
    pydantic_v2: bool = False
    list_samplers: Listing = sampling.a1111_samplers
    list_schedulers: Listing = sampling.a1111_schedulers
    # The request field that picks the schedule (None: only combined sampler names).
    schedule_field: str | None = "scheduler"
    # `info` (Processed.js) keys this webui leaves out, and keys it adds at the end with the
    # request field they echo (None: always null).
    info_drop: frozenset[str] = frozenset()
    info_add: tuple[tuple[str, Any], ...] = ()
    removed_routes: frozenset[str] = frozenset()
    added_routes: frozenset[str] = frozenset()  # names from routes.OPTIONAL
    control_no_content: bool = False  # /interrupt and /skip answer 204 without a body
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return self.catalog.version


V110 = Behaviour("v1.10", Catalog(), fields.FIELDS, sampling.resolve_v110)

V19 = Behaviour("v1.9", variants.V19, fields.FIELDS, sampling.resolve_v19)

V18 = Behaviour(
    "v1.8",
    variants.V18,
    fields.FIELDS_V18,
    sampling.resolve_v18,
    schedule_field=None,
    removed_routes=frozenset({"/sdapi/v1/schedulers"}),
)

FORGE = Behaviour(
    "forge",
    variants.FORGE,
    fields.FIELDS_FORGE,
    sampling.resolve_v110,
    errors=styles.FORGE,
    pydantic_v2=True,
    removed_routes=frozenset({"/sdapi/v1/sd-vae"}),
    added_routes=frozenset({"/sdapi/v1/sd-modules"}),
)

SDNEXT = Behaviour(
    "sdnext",
    variants.SDNEXT,
    fields.FIELDS_SDNEXT,
    sampling.resolve_sdnext,
    errors=styles.SDNEXT,
    pydantic_v2=True,
    list_samplers=sampling.sdnext_samplers,
    list_schedulers=sampling.sdnext_schedulers,
    schedule_field="schedulers_sigma",
    info_drop=frozenset(
        {
            "sd_model_name",
            "sd_vae_name",
            "sd_vae_hash",
            "restore_faces",
            "face_restoration_model",
            "is_using_inpainting_conditioning",
            "version",
        }
    ),
    info_add=(("cfg_end", "cfg_end"), ("detailer", None), ("detailer_model", None)),
    added_routes=frozenset({"/sdapi/v1/version"}),
    control_no_content=True,
    extra={
        "version": {
            "app": "sd.next",
            "updated": "2026-07-23",
            "hash": "058a7f0c",
            "url": "https://github.com/vladmandic/sdnext/tree/master",
        }
    },
)

BEHAVIOURS: dict[str, Behaviour] = {b.name: b for b in (V110, V19, V18, FORGE, SDNEXT)}
NAMES = tuple(BEHAVIOURS)


def get(name: str) -> Behaviour:
    try:
        return BEHAVIOURS[name]
    except KeyError:
        raise ValueError(f"unknown behaviour {name!r}; choose from {', '.join(NAMES)}") from None
