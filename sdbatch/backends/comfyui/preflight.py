"""Check a job against what a ComfyUI server has, before anything is queued.

Entry point: `check_all(job, facts_list) -> list[Translation]`. Every node class of the graph
must exist; every sampler, scheduler and checkpoint the job sets must be in the server's list
(A1111 names mapped first, `names`), with a did-you-mean; every number within the input's
min/max. All problems are raised at once at the job's `file:line:col` (exit 2): ComfyUI itself
would only refuse each prompt on its own, one at a time, mid-run.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sdbatch.backends.comfyui.facts import ComfyFacts
from sdbatch.backends.comfyui.names import CHECKPOINT_SETTING, CLIP_SKIP_SETTING, to_comfy
from sdbatch.backends.comfyui.translation import Translation
from sdbatch.backends.comfyui.usergraph import FIELD_OF, UserGraph
from sdbatch.backends.comfyui.workflowcheck import check_workflow
from sdbatch.errors import JobValidationError, Problem, choice_hint
from sdbatch.job.loader import Job
from sdbatch.job.positions import locate
from sdbatch.job.prompttags import job_texts, renderings, tags
from sdbatch.job.schema import json_path
from sdbatch.job.values import CHECKPOINT, Found, fields_set, occurrences
from sdbatch.job.workflow import is_address

# The built-in graph's node classes (translation.Translation.graph); CLIPSetLastLayer only
# joins it for clip skip.
BUILT_IN = (
    "CheckpointLoaderSimple",
    "CLIPTextEncode",
    "EmptyLatentImage",
    "KSampler",
    "VAEDecode",
    "SaveImage",
)
# Numeric job fields -> the input they become in the built-in graph, and how.
NUMBERS: dict[str, tuple[str, str, Callable[[Any], Any]]] = {
    "steps": ("KSampler", "steps", lambda v: v),
    "cfg_scale": ("KSampler", "cfg", lambda v: v),
    "width": ("EmptyLatentImage", "width", lambda v: v),
    "height": ("EmptyLatentImage", "height", lambda v: v),
    "batch_size": ("EmptyLatentImage", "batch_size", lambda v: v),
    "denoising_strength": ("KSampler", "denoise", lambda v: v),
    CLIP_SKIP_SETTING: ("CLIPSetLastLayer", "stop_at_clip_layer", lambda v: -v),
}
# What a ComfyUI graph has a place for; any other field the job sets (hires fix, restore_faces,
# styles, ...) would be dropped without a word, so preflight refuses it.
HONOURED = {*NUMBERS, *FIELD_OF, "n_iter", "override_settings"} - {"denoising_strength"}
HONOURED_SETTINGS = {CHECKPOINT_SETTING, CLIP_SKIP_SETTING}


@dataclass
class _Check:
    job: Job
    facts: ComfyFacts
    problems: list[Problem] = field(default_factory=list)

    @functools.cached_property
    def user(self) -> UserGraph | None:
        """The job's workflow with its bindings found, once for every check of it."""
        return UserGraph(self.job.workflow, (), ()) if self.job.workflow else None

    def problem(self, found: Found | None, message: str) -> None:
        path = found.path if found else ()
        line, col = locate(self.job.positions, path) if found else (0, 0)
        file = self.job.file or str(self.job.path)
        self.problems.append(Problem(file, line, col, json_path(path), message))

    def listed(self, found: Found, value: str, class_type: str, name: str, what: str) -> None:
        choices = self.facts.choices(class_type, name)
        if choices and value not in choices:
            hint = choice_hint(value, choices)
            shown = f"{found.value!r}" + (f" (sent as {value!r})" if value != found.value else "")
            self.problem(found, f"unknown {what} {shown} on {self.facts.url}{hint}")

    def numbers(self) -> list[tuple[str, str, str, Callable[[Any], Any]]]:
        """NUMBERS as (field, class, input, convert), moved to every node a workflow binds
        each field to."""
        if self.user is None:
            return [(k, *v) for k, v in NUMBERS.items() if k != "denoising_strength"]
        graph = self.user.workflow.graph
        return [
            (key, str(graph[node]["class_type"]), name, convert)
            for key, (_, _, convert) in NUMBERS.items()
            for node, name in self.user.targets.get(FIELD_OF[key], ())
        ]

    def unsupported(self) -> None:
        honoured = HONOURED | ({"denoising_strength"} if self.job.workflow else set())
        what = "the workflow" if self.job.workflow else "the built-in graph"
        for path, key in fields_set(self.job):
            known = HONOURED_SETTINGS if path[-1:] == ("override_settings",) else honoured
            if key in known or is_address(key):
                continue
            found = Found(key, None, (*path, key))
            self.problem(
                found,
                f"ComfyUI ({what}) has no place for it and would ignore it; remove it"
                + ("" if self.job.workflow else ", or run a workflow: whose node takes it"),
            )
        seen = set()
        for text in job_texts(self.job):
            for rendered, _ in renderings(text.template, self.job):
                for tag in tags(rendered):
                    if (text.where, tag.kind) not in seen:
                        seen.add((text.where, tag.kind))
                        self.problems.append(
                            text.where.problem(
                                f"{tag.text}: ComfyUI does not read <{tag.kind}:...> tags; its "
                                f"text encoder would take them as words. Load it with a node "
                                f"(LoraLoader) in a workflow"
                            )
                        )
        if self.job.inputs is not None:
            self.problem(
                Found("inputs", None, ("inputs",)),
                "inputs: (img2img) runs on A1111 only; with ComfyUI, load the pictures in a "
                "workflow",
            )

    def run(self) -> Translation:
        url = self.facts.url
        self.unsupported()
        if self.user is not None:
            check_workflow(self.job, self.user, self.facts, self.problem)
        for class_type in BUILT_IN if self.job.workflow is None else ():
            if class_type not in self.facts.classes:
                self.problem(None, f"{url} has no node class {class_type!r}")
        for found in occurrences(self.job, CLIP_SKIP_SETTING):
            if "CLIPSetLastLayer" not in self.facts.classes and self.job.workflow is None:
                self.problem(
                    found, f"clip skip needs node class 'CLIPSetLastLayer'; {url} has none"
                )
        samplers = self.facts.choices("KSampler", "sampler_name")
        schedulers = self.facts.choices("KSampler", "scheduler")
        for found in occurrences(self.job, "sampler_name"):
            if isinstance(found.value, str):
                sent = to_comfy(found.value, None, samplers, schedulers)[0]
                self.listed(found, sent, "KSampler", "sampler_name", "sampler")
        for found in occurrences(self.job, "scheduler"):
            if isinstance(found.value, str):
                pair = to_comfy(samplers[0] if samplers else "", found.value, samplers, schedulers)
                self.listed(found, pair[1], "KSampler", "scheduler", "scheduler")
        for found in occurrences(self.job, CHECKPOINT):
            if isinstance(found.value, str):
                self.listed(found, found.value, "CheckpointLoaderSimple", "ckpt_name", "checkpoint")
        for key, class_type, name, convert in self.numbers():
            spec = self.facts.spec(class_type, name)
            for found in occurrences(self.job, key):
                if spec is None or not isinstance(found.value, int | float):
                    continue
                value, low, high = convert(found.value), spec[1].get("min"), spec[1].get("max")
                if (low is not None and value < low) or (high is not None and value > high):
                    self.problem(
                        found,
                        f"{key} {found.value} is outside {low}..{high} for {class_type}.{name} "
                        f"on {url}",
                    )
        checkpoints = self.facts.choices("CheckpointLoaderSimple", "ckpt_name")
        return Translation(
            samplers, schedulers, checkpoints[0] if checkpoints else "", self.job.workflow
        )


def check_all(job: Job, facts_list: Sequence[ComfyFacts]) -> list[Translation]:
    """Preflight every server of the run; raise JobValidationError with every problem."""
    problems: list[Problem] = []
    translations = []
    for facts in facts_list:
        check = _Check(job, facts)
        translations.append(check.run())
        problems += check.problems
    if problems:
        raise JobValidationError(list(dict.fromkeys(problems)))
    return translations
