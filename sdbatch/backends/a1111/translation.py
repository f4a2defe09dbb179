"""From a planned payload to what one particular webui must receive to do what the job means.

Entry point: `Translation.apply(payload) -> dict`, built by `preflight.preflight` (which has
checked every value the job can send, so `apply` only looks names up) and called by the worker
on every payload: `session.post(url, json=translation.apply(item.payload))`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from sdbatch.backends.a1111.names import AUTOMATIC, SAME_SAMPLER, SDNEXT_SIGMA_FIELD, SDNEXT_SIGMAS
from sdbatch.backends.a1111.options import wire_value

CHECKPOINT_SETTING = "sd_model_checkpoint"
API_DEFAULT_SAMPLER = "Euler"  # sampler_index's default, used when sampler_name is null (§1)


def _frozen() -> Mapping[Any, Any]:
    return MappingProxyType({})


@dataclass(frozen=True)
class Translation:
    url: str
    # "field": send `scheduler` (A1111 >= v1.9, Forge); "legacy": fold the schedule into a
    # combined sampler name (A1111 <= v1.8); "sigma": SD.Next's `schedulers_sigma`.
    schedule_mode: str = "field"
    samplers: Mapping[str, str] = field(default_factory=_frozen)  # as written -> server's name
    schedulers: Mapping[str, str] = field(default_factory=_frozen)  # as written -> label
    checkpoints: Mapping[str, str] = field(default_factory=_frozen)  # any alias -> title
    combined: Mapping[tuple[str, str], str] = field(default_factory=_frozen)  # legacy names
    split: Mapping[str, str] = field(default_factory=_frozen)  # legacy name -> schedule label
    # Options every payload sends unless it sets its own (preflight's `pinned`).
    pinned: Mapping[str, Any] = field(default_factory=_frozen)
    # Those of them the server held off their defaults, unasked: key -> (value, default).
    inherited: Mapping[str, tuple[Any, Any]] = field(default_factory=_frozen)

    def apply(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """What is actually sent for `payload`: server spellings of samplers and checkpoints,
        the schedule in this server's dialect, and no field the server would silently drop."""
        out = dict(payload)
        for key, schedule_key in (
            ("sampler_name", "scheduler"),
            ("hr_sampler_name", "hr_scheduler"),
        ):
            value = out.get(key)
            if key == "hr_sampler_name" and value in SAME_SAMPLER:
                # A1111 would assert on the UI's sentinel after the first pass; null means same.
                del out[key]
            elif isinstance(value, str):
                out[key] = self.samplers.get(value, value)
                # As the webui does: the name's schedule only when no scheduler is given.
                if value in self.split and not out.get(schedule_key):
                    out[schedule_key] = self.split[value]
        sampler = out.get("sampler_name") or API_DEFAULT_SAMPLER  # before any folding
        self._schedule(out, "scheduler", "sampler_name", sampler)
        self._schedule(
            out, "hr_scheduler", "hr_sampler_name", out.get("hr_sampler_name") or sampler
        )
        settings = out.get("override_settings")
        if self.pinned:
            own = settings if isinstance(settings, Mapping) else {}
            settings = {**self.pinned, **{k: v for k, v in own.items() if v is not None}}
        if isinstance(settings, Mapping):
            settings = {k: wire_value(k, v) for k, v in settings.items()}
            out["override_settings"] = settings
        if isinstance(settings, Mapping) and settings.get(CHECKPOINT_SETTING) is not None:
            written = settings[CHECKPOINT_SETTING]
            title = self.checkpoints.get(written, written)
            out["override_settings"] = {**settings, CHECKPOINT_SETTING: title}
            # Otherwise the webui reloads its configured model before the next request that
            # names no checkpoint, and again for the next that does: a full load per switch.
            out["override_settings_restore_afterwards"] = False
        hires = out.get("hr_checkpoint_name")
        if isinstance(hires, str):
            out["hr_checkpoint_name"] = self.checkpoints.get(hires, hires)
        return out

    def _schedule(self, out: dict[str, Any], key: str, sampler_key: str, sampler: str) -> None:
        if key not in out:
            return
        written = out[key]
        label = self.schedulers.get(written, written) if isinstance(written, str) else None
        if self.schedule_mode == "field" and label not in (None, AUTOMATIC):
            out[key] = label  # in place: the payload keeps its key order
            return
        del out[key]
        if label is None or label == AUTOMATIC:
            return  # nothing sent means the sampler's own default, on every flavour
        if self.schedule_mode == "legacy":
            out[sampler_key] = self.combined.get((sampler, label), f"{sampler} {label}")
        elif key == "scheduler":  # SD.Next: one sigma algorithm for both passes
            out[SDNEXT_SIGMA_FIELD] = SDNEXT_SIGMAS.get(label, label)
