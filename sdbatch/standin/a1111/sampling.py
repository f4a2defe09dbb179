"""Sampler and schedule resolution per webui, and the /samplers and /schedulers listings.

Each `resolve_*` turns the validated request into the sampler and schedule the image gets, the
way that webui does it (a1111-api.md §3 table, §5 history, §8): a silent fallback (v1.10,
Forge), a 404 (v1.8, v1.9, SD.Next), combined names (v1.8) or a separate sigma field (SD.Next).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sdbatch.standin.a1111.catalog import Catalog, Sampler
from sdbatch.standin.a1111.errors import http_exception
from sdbatch.standin.a1111.variants import SDNEXT_SIGMAS


@dataclass(frozen=True)
class Resolved:
    sampler: str
    schedule: str | None  # the schedule the image really gets (for the mock's records)
    extra: dict[str, Any] = field(default_factory=dict)  # its extra_generation_params


Resolver = Callable[[Mapping[str, Any], Catalog], Resolved]


def _not_found() -> Exception:
    return http_exception(404, "Sampler not found")


def schedule_type(catalog: Catalog, sampler: str, scheduler: str | None) -> str | None:
    """The "Schedule type" label KDiffusionSampler.get_sigmas records, None for model default.

    An unknown p.scheduler is corrected to Automatic (fix_p_invalid_sampler_and_scheduler), and
    Automatic means the sampler's own default ("DPM++ 2M" -> Karras, "Euler" -> none).
    """
    found = catalog.scheduler(scheduler)
    if found is None or found.name == "automatic":
        s = catalog.sampler(sampler)
        found = catalog.scheduler(s.default_scheduler if s else None)
    return None if found is None or found.name == "automatic" else found.label


def _labelled(catalog: Catalog, sampler: str, scheduler: str | None) -> Resolved:
    label = schedule_type(catalog, sampler, scheduler)
    return Resolved(sampler, label, {} if label is None else {"Schedule type": label})


def resolve_v110(req: Mapping[str, Any], catalog: Catalog) -> Resolved:
    """get_sampler_and_scheduler plus the API's populate step (v1.10, Forge).

    An unknown sampler silently becomes the first one ("DPM++ 2M"); a trailing scheduler
    label/name/alias ("DPM++ 2M Karras") is split off and used only if the client sent none.
    """
    default = catalog.samplers[0]
    name = req["sampler_name"] or req["sampler_index"] or default.name
    found = catalog.scheduler(req["scheduler"]) or catalog.schedulers[0]
    for sch in catalog.schedulers:
        suffix = next(
            (o for o in (sch.label, sch.name, *(sch.aliases or ())) if name.endswith(" " + o)), None
        )
        if suffix is not None:
            found, name = sch, name[: -(len(suffix) + 1)]
            break
    sampler = catalog.sampler(name) or default
    if sampler.default_scheduler == found.name:  # convert_automatic=True
        found = catalog.schedulers[0]
    scheduler = req["scheduler"]
    if not scheduler and found.name != "automatic":
        scheduler = found.label
    return _labelled(catalog, sampler.name, scheduler)


def resolve_v19(req: Mapping[str, Any], catalog: Catalog) -> Resolved:
    """v1.9: validate_sampler_name 404s anything not listed, combined names included."""
    sampler = catalog.sampler(req["sampler_name"] or req["sampler_index"])
    if sampler is None:
        raise _not_found()
    return _labelled(catalog, sampler.name, req["scheduler"])


def resolve_v18(req: Mapping[str, Any], catalog: Catalog) -> Resolved:
    """v1.8: the schedule is part of the sampler ("DPM++ 2M Karras"); the infotext has only
    `Sampler:` and no "Schedule type"."""
    sampler = catalog.sampler(req["sampler_name"] or req["sampler_index"])
    if sampler is None:
        raise _not_found()
    schedule = catalog.scheduler(sampler.default_scheduler)
    return Resolved(sampler.name, None if schedule is None else schedule.label)


def find_sdnext(catalog: Catalog, name: str) -> Sampler | None:
    """sd_samplers.find_sampler: exact, then case-insensitive name or an alias."""
    return catalog.sampler(name) or next(
        (s for s in catalog.samplers if s.name.lower() == name.lower() or name in s.aliases), None
    )


def resolve_sdnext(req: Mapping[str, Any], catalog: Catalog) -> Resolved:
    """SD.Next: helpers.validate_sampler_name (404 or the canonical name); the sigma schedule
    comes from `schedulers_sigma` and shows as "Sampler sigma" when not "default"."""
    name = req["sampler_name"] or "Default"
    sampler = find_sdnext(catalog, name) if name not in ("", "None") else None
    if sampler is None:
        raise _not_found()
    sigma = req.get("schedulers_sigma")
    if sigma not in SDNEXT_SIGMAS or sigma == "default":
        return Resolved(sampler.name, None)
    return Resolved(sampler.name, str(sigma).capitalize(), {"Sampler sigma": sigma})


def a1111_samplers(catalog: Catalog) -> list[dict[str, Any]]:
    return [s.as_json() for s in catalog.samplers]


def a1111_schedulers(catalog: Catalog) -> list[dict[str, Any]]:
    return [s.as_json() for s in catalog.schedulers]


def sdnext_samplers(catalog: Catalog) -> list[dict[str, Any]]:
    # endpoints.get_samplers skips the "Default" pseudo-sampler and has no aliases.
    return [{"name": s.name, "options": dict(s.options)} for s in catalog.samplers[1:]]


def sdnext_schedulers(catalog: Catalog) -> list[dict[str, Any]]:
    return [
        {"name": s.name, "cls": s.cls, "options": dict(s.options)} for s in catalog.samplers[1:]
    ]
