"""After an image: did the webui use what was asked? It does not always say no when it won't.

Entry point: `compare(sent, info, infotext, facts) -> {field: [asked, got]}`, `{}` when all
matches. The writer calls it per image with the payload as sent (`translation.apply`'s
result), the response's decoded `info` and that image's infotext, and marks the manifest row
`mismatch` with the differences. Why: v1.10 silently swaps an unknown sampler for "DPM++ 2M"
and an unknown scheduler for Automatic, and ignores an unknown checkpoint (a1111-api.md §3, §7).

Here: sampler, schedule (A1111's `scheduler`, SD.Next's `schedulers_sigma`), checkpoint,
width/height, steps, cfg_scale, as far as they were sent; `paramcheck` judges every other
parameter of the infotext and the PNG's own size. Both sides of a schedule
mean the sampler's default when Automatic: v1.10 records "Schedule type: Karras" for
"DPM++ 2M" + Automatic and turns a requested default back into Automatic, neither of which is
a change. A legacy combined name ("DPM++ 2M Karras") matches its v1.10 split report.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from sdbatch.backends.a1111.applied import dropped_networks
from sdbatch.backends.a1111.facts import ServerFacts
from sdbatch.backends.a1111.infotext import parse_infotext
from sdbatch.backends.a1111.names import AUTOMATIC, SDNEXT_SIGMA_FIELD, V110_DEFAULTS, schedule_key
from sdbatch.backends.a1111.paramcheck import check_params, same

CHECKPOINT_SETTING = "sd_model_checkpoint"  # the key of the difference, as the webui names it
_TITLE = re.compile(r"^(?P<name>.*?)(?: \[(?P<hash>[0-9a-fA-F]{8,64})\])?$")


def compare(
    sent: Mapping[str, Any],
    info: Mapping[str, Any],
    infotext: str | None,
    facts: ServerFacts | None = None,
    *,
    png_size: tuple[int, int] | None = None,
    seed: int | None = None,
    inherited: Mapping[str, tuple[Any, Any]] | None = None,
) -> dict[str, list[Any]]:
    params = parse_infotext(infotext)
    extra = info.get("extra_generation_params")
    extra = extra if isinstance(extra, Mapping) else {}

    def reported(info_key: str | None, param: str) -> Any:
        value = info.get(info_key) if info_key else None
        return params.get(param) if value is None else value

    diffs: dict[str, list[Any]] = {}
    got_sampler = reported("sampler_name", "Sampler")
    got_schedule = extra.get("Schedule type", params.get("Schedule type"))
    # A schedule is only known to be absent (Automatic) when the webui said something at all.
    schedule_known = "extra_generation_params" in info or bool(params)
    asked = sent.get("sampler_name")
    if isinstance(asked, str) and got_sampler is not None:
        fold = facts is not None and facts.case_insensitive
        matches = _eq(asked, got_sampler, fold) or (
            got_schedule is not None and _eq(asked, f"{got_sampler} {got_schedule}", fold)
        )
        if not matches:
            diffs["sampler_name"] = [asked, got_sampler]
    asked = sent.get("scheduler")
    if isinstance(asked, str) and schedule_known:
        sampler = str(got_sampler or sent.get("sampler_name") or "")
        if facts is not None:
            default = facts.sampler_defaults.get(sampler)
            asked_label = facts.scheduler(asked) or asked
        else:
            default, asked_label = V110_DEFAULTS.get(sampler), asked
        if _schedule(asked_label, default) != _schedule(got_schedule, default):
            diffs["scheduler"] = [asked, got_schedule or AUTOMATIC]
    asked = sent.get(SDNEXT_SIGMA_FIELD)
    if isinstance(asked, str) and schedule_known:
        got = extra.get("Sampler sigma", params.get("Sampler sigma")) or "default"
        if str(got).lower() != asked.lower():
            diffs[SDNEXT_SIGMA_FIELD] = [asked, got]
    settings = sent.get("override_settings")
    asked = settings.get(CHECKPOINT_SETTING) if isinstance(settings, Mapping) else None
    if isinstance(asked, str):
        got = _checkpoint_diff(
            asked,
            reported("sd_model_name", "Model"),
            reported("sd_model_hash", "Model hash"),
            facts,
        )
        if got is not None:
            diffs[CHECKPOINT_SETTING] = [asked, got]
    size = params.get("Size", "").partition("x")
    for key, param in (("width", size[0]), ("height", size[2]), ("steps", params.get("Steps"))):
        got = _number(info.get(key, param or None))
        if sent.get(key) is not None and got is not None and not same(sent[key], got):
            diffs[key] = [sent[key], got]
    got = _number(reported("cfg_scale", "CFG scale"))
    if sent.get("cfg_scale") is not None and got is not None and not same(sent["cfg_scale"], got):
        diffs["cfg_scale"] = [sent["cfg_scale"], got]
    # Everything else the webui reports, and the size of the PNG itself.
    checked = check_params(sent, params, png_size=png_size, seed=seed, inherited=inherited)
    for key, diff in checked.items():
        diffs.setdefault(key, diff)
    # LoRAs and embeddings the webui dropped; the embeddings' list was read at preflight.
    installed = facts.installed if facts is not None else None
    embeddings = installed.embeddings() if installed is not None else None
    loaded = embeddings.loaded if embeddings is not None else ()
    diffs.update(dropped_networks(sent, params, loaded))
    return diffs


def _eq(a: str, b: str, fold: bool) -> bool:
    return a.casefold() == b.casefold() if fold else a == b


def _schedule(value: str | None, default: str | None) -> str:
    """Automatic stands for the sampler's own default schedule, when it has one."""
    key = schedule_key(value)
    return schedule_key(default) if key == "automatic" and default else key


def _number(value: Any) -> Any:
    """An infotext's "6" as the number the info dict would have had, else unchanged."""
    if not isinstance(value, str):
        return value
    try:
        number = float(value)
    except ValueError:
        return value
    return int(number) if number.is_integer() and "." not in value else number


def _checkpoint_diff(asked: str, name: Any, digest: Any, facts: ServerFacts | None) -> Any:
    """None when the reported model is the asked one, else how to show what was used. The
    hash decides when both sides have one (two folders may hold equal file names)."""
    if name is None and digest is None:
        return None  # nothing reported (SD.Next has no sd_model_name): no evidence
    found = facts.checkpoint(asked) if facts is not None else None
    if found is not None:
        asked_hash, aliases = found.hash, found.aliases
    else:
        match = _TITLE.match(asked)
        stem = os.path.splitext(os.path.basename(match["name"] if match else asked))[0]
        asked_hash = match["hash"] if match else None
        aliases = frozenset({asked, stem})
    if digest and asked_hash:
        same = str(asked_hash).startswith(str(digest)) or str(digest).startswith(asked_hash)
    else:
        same = str(name) in aliases
    if same:
        return None
    used = None
    if facts is not None:
        used = next((c.title for c in facts.checkpoints if digest and c.hash == digest), None)
    return used or (f"{name} [{digest}]" if name and digest else name or digest)
