"""Stage 2½: check a job against what a webui really has, before anything is sent.

Entry point: `preflight(job, facts) -> Translation` (and `check_all(job, facts_list)` for a run
over several webuis). The lead's CLI calls `inspect_server` + `preflight` before the first
txt2img of a run and in `sdbatch check JOB [--server URL]`; the worker then sends
`translation.apply(payload)`. Why: the webui forgives too much. v1.10 silently replaces an
unknown sampler by "DPM++ 2M" and an unknown scheduler by Automatic, an unknown checkpoint by
the loaded one, and v1.8 drops `scheduler` without a word (a1111-api.md §3, §5, §7): a night of
images made with the wrong settings. So every sampler, scheduler, checkpoint and upscaler the
job can send is checked here, and every LoRA, hypernetwork and style (`extranets`), each at its
`file:line:col`, all raised at once (exit 2).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from sdbatch.backends.a1111 import extranets
from sdbatch.backends.a1111.facts import ServerFacts, inspect_server
from sdbatch.backends.a1111.names import (
    AUTOMATIC,
    SAME_CHECKPOINT,
    SAME_SAMPLER,
    SDNEXT_SIGMAS,
    label_index,
)
from sdbatch.backends.a1111.options import IMAGE_OPTIONS, MASK_OPTIONS, changed_options
from sdbatch.backends.a1111.translation import API_DEFAULT_SAMPLER, CHECKPOINT_SETTING, Translation
from sdbatch.errors import JobValidationError, Problem, choice_hint
from sdbatch.job.loader import Job
from sdbatch.job.positions import locate
from sdbatch.job.schema import json_path
from sdbatch.job.values import CHECKPOINT, Found, combos, occurrences

log = logging.getLogger("sdbatch")

__all__ = ["ServerFacts", "Translation", "check_all", "inspect_server", "preflight"]


@dataclass
class _Check:
    """One job against one server; fills `problems` and the translation tables."""

    job: Job
    facts: ServerFacts
    others: Sequence[ServerFacts] = ()
    problems: list[Problem] = field(default_factory=list)
    samplers: dict[str, str] = field(default_factory=dict)
    schedulers: dict[str, str] = field(default_factory=dict)
    checkpoints: dict[str, str] = field(default_factory=dict)
    combined: dict[tuple[str, str], str] = field(default_factory=dict)
    split: dict[str, str] = field(default_factory=dict)  # legacy name -> its schedule label

    def problem(self, found: Found, message: str) -> None:
        line, col = locate(self.job.positions, found.path)
        file = self.job.file or str(self.job.path)
        self.problems.append(Problem(file, line, col, json_path(found.path), message))

    def sampler_names(self) -> None:
        facts, labels = self.facts, label_index(self.facts.schedulers)
        for found in occurrences(self.job, "sampler_name") + occurrences(
            self.job, "hr_sampler_name"
        ):
            value = found.value
            if not isinstance(value, str) or value in SAME_SAMPLER:
                continue
            name = facts.sampler(value)
            if name is not None:
                self.samplers[value] = name
                continue
            base, label = self._split(value, labels)
            if base is not None and label is not None:
                # v1.10 splits "DPM++ 2M Karras" itself (OBSERVED 6); sdbatch sends the two
                # halves, which every webui with a scheduler field takes and the post-check
                # can compare with what it reports.
                if value not in self.split:
                    log.info(
                        "%s: the old combined name %r is sent as %r with scheduler %r",
                        found.field,
                        value,
                        base,
                        label,
                    )
                self.samplers[value] = base
                self.split[value] = label
                continue
            hint = choice_hint(value, facts.sampler_names)
            self.problem(found, f"unknown sampler {value!r} on {facts.url}{hint}")

    def _split(self, value: str, labels: Mapping[str, str]) -> tuple[str | None, str | None]:
        """A legacy combined name as (sampler, schedule label), on a webui that has a
        scheduler field and both halves; (None, None) otherwise."""
        if not self.facts.has_scheduler_field:
            return None, None
        for label in sorted(labels, key=len, reverse=True):  # "SGM Uniform" before "Uniform"
            if value.endswith(" " + label):
                base = self.facts.sampler(value[: -len(label) - 1])
                if base is not None:
                    return base, labels[label]
        return None, None

    def scheduler_names(self) -> None:
        facts, labels = self.facts, label_index(self.facts.schedulers)
        for found in occurrences(self.job, "scheduler") + occurrences(self.job, "hr_scheduler"):
            if not isinstance(found.value, str):
                continue
            label = labels.get(found.value)
            if label is None:
                names = [s.label for s in facts.schedulers]
                hint = choice_hint(found.value, names)
                self.problem(found, f"unknown scheduler {found.value!r} on {facts.url}{hint}")
                continue
            self.schedulers[found.value] = label
            if facts.flavour != "sdnext" or label == AUTOMATIC:
                continue
            if found.field == "hr_scheduler":
                self.problem(
                    found,
                    f"SD.Next ({facts.url}) has no hires schedule of its own; its "
                    "schedulers_sigma applies to both passes: drop hr_scheduler",
                )
            elif label not in SDNEXT_SIGMAS:
                choices = ", ".join(SDNEXT_SIGMAS)
                self.problem(
                    found,
                    f"SD.Next ({facts.url}) has no scheduler field; its sigma schedules "
                    f"(schedulers_sigma) are {choices}, not {label!r}",
                )

    def legacy_pairs(self) -> None:
        """A webui without a scheduler field only knows schedules as part of a sampler's name:
        each (sampler, schedule) pair the job sends must exist as one combined name."""
        pairs = (("sampler_name", "scheduler"), ("hr_sampler_name", "hr_scheduler"))
        for sampler_field, schedule_field in pairs:
            fields = ["sampler_name", sampler_field, schedule_field]
            for choice in combos(self.job, list(dict.fromkeys(fields))):
                schedule = choice.get(schedule_field)
                label = self.schedulers.get(schedule.value) if schedule else None
                if schedule is None or label is None or label == AUTOMATIC:
                    continue
                own = choice.get(sampler_field)
                picked = own if own and own.value not in SAME_SAMPLER else None
                picked = picked or choice.get("sampler_name")
                written = picked.value if picked and picked.value else API_DEFAULT_SAMPLER
                sampler = self.samplers.get(written)
                if picked and picked.value and sampler is None:
                    continue  # an unknown sampler, reported already
                sampler = sampler or written
                name = self.facts.sampler(f"{sampler} {label}")
                if name is not None:
                    self.combined[(sampler, label)] = name
                    continue
                hint = choice_hint(f"{sampler} {label}", self.facts.sampler_names)
                self.problem(
                    schedule,
                    f"this webui ({self.facts.url}, no /sdapi/v1/schedulers) has no sampler "
                    f"{sampler + ' ' + label!r}{hint}",
                )

    def checkpoint_names(self) -> None:
        facts = self.facts
        for found in occurrences(self.job, CHECKPOINT) + occurrences(
            self.job, "hr_checkpoint_name"
        ):
            value = found.value
            if not isinstance(value, str) or value == SAME_CHECKPOINT:
                continue
            checkpoint = facts.checkpoint(value)
            if checkpoint is not None:
                self.checkpoints[value] = checkpoint.title
                continue
            elsewhere = [o.url for o in self.others if o.checkpoint(value) is not None]
            if elsewhere:
                self.problem(
                    found,
                    f"{facts.url} has no checkpoint {value!r} that the job uses (it is on "
                    f"{', '.join(elsewhere)}); every server of a run must have every checkpoint",
                )
                continue
            names = [n for c in facts.checkpoints for n in (c.title, c.model_name)]
            self.problem(
                found, f"unknown checkpoint {value!r} on {facts.url}{choice_hint(value, names)}"
            )

    def upscaler_names(self) -> None:
        known = (*self.facts.latent_modes, *self.facts.upscalers)
        for found in occurrences(self.job, "hr_upscaler"):
            if isinstance(found.value, str) and found.value not in known:
                hint = choice_hint(found.value, known)
                self.problem(found, f"unknown upscaler {found.value!r} on {self.facts.url}{hint}")

    def asked_options(self) -> set[str]:
        """The webui options some payload of the job sets itself."""
        keys = {
            key
            for found in occurrences(self.job, "override_settings")
            if isinstance(found.value, Mapping)
            for key in found.value
        }
        if occurrences(self.job, "vae"):
            keys.add("sd_vae")
        return keys

    def pinned(self, source: ServerFacts) -> dict[str, Any]:
        """The options every payload sends (unless it sets its own): the checkpoint, each
        option some payload overrides and every option that changes the image, at `source`'s
        values when the run began. So no payload depends on what ran before it, here or in
        another client (v1.10 keeps overrides for later requests, OBSERVED 1), and each
        manifest row says in full what made its image."""
        keys = self.asked_options() | set(IMAGE_OPTIONS)
        pinned = {k: source.options[k] for k in sorted(keys) if k in source.options}
        if self.job.inputs is not None:
            pinned.update({k: v for k, v in MASK_OPTIONS.items() if k in source.options})
        current = source.current_checkpoint
        if current is not None:
            pinned[CHECKPOINT_SETTING] = current
            if source is not self.facts and self.facts.checkpoint(current) is None:
                self.problems.append(
                    Problem(
                        self.job.file or str(self.job.path),
                        1,
                        1,
                        "$",
                        f"the job names no checkpoint, so it runs on {current!r} (loaded on "
                        f"{source.url}), which {self.facts.url} does not have: set "
                        "defaults.checkpoint",
                    )
                )
        return pinned

    def run(self, source: ServerFacts | None = None) -> Translation:
        self.sampler_names()
        self.scheduler_names()
        self.checkpoint_names()
        self.upscaler_names()
        self.problems += extranets.check(self.job, self.facts, choice_hint)
        facts = self.facts
        source = source or facts
        pinned = self.pinned(source)
        inherited = changed_options(source.options, self.asked_options())
        for key, value, default in inherited if source is facts else ():
            log.warning(
                "%s holds %s = %r (default %r), which changes images; this job does not set "
                "it, so all its images get it and are marked: set override_settings: {%s: "
                "...} in defaults to choose, or reset it in the webui",
                source.url,
                key,
                value,
                default,
                key,
            )
        mode = "field" if facts.has_scheduler_field else "sigma"
        if facts.flavour != "sdnext" and not facts.has_scheduler_field:
            mode = "legacy"
            self.legacy_pairs()
        return Translation(
            url=facts.url,
            schedule_mode=mode,
            samplers=MappingProxyType(self.samplers),
            schedulers=MappingProxyType(self.schedulers),
            checkpoints=MappingProxyType(self.checkpoints),
            combined=MappingProxyType(self.combined),
            split=MappingProxyType(self.split),
            pinned=MappingProxyType(pinned),
            inherited=MappingProxyType(
                {key: (value, default) for key, value, default in inherited}
            ),
        )


def preflight(job: Job, facts: ServerFacts) -> Translation:
    """Check every sampler, scheduler, checkpoint and hires upscaler `job` can send against
    `facts`; raise `JobValidationError` with every unknown value (exit 2), else return the
    `Translation` the worker applies to each payload for this server."""
    check = _Check(job, facts)
    translation = check.run()
    if check.problems:
        raise JobValidationError(list(dict.fromkeys(check.problems)))
    return translation


def check_all(job: Job, facts_list: Sequence[ServerFacts]) -> list[Translation]:
    """`preflight` for each server of a run, all problems at once. Payloads go to whichever
    server is free, so one lacking a checkpoint the job uses is refused, not worked around."""
    problems: list[Problem] = []
    translations = []
    for facts in facts_list:
        check = _Check(job, facts, [o for o in facts_list if o is not facts])
        # One set of pinned values for all webuis: a payload is the same wherever it runs.
        translations.append(check.run(facts_list[0]))
        problems += check.problems
    if problems:
        raise JobValidationError(list(dict.fromkeys(problems)))
    return translations
