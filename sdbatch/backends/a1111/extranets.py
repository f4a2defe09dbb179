"""LoRAs, hypernetworks, styles and embeddings a job names, against what the webui has.

Entry point: `check(job, facts, hint) -> list[Problem]`, run by preflight (`applied` is the
post-check's side: what each image's infotext says was used). Why: A1111 drops a
`<lora:…>` it cannot find, and ignores an unknown hypernetwork or style, without a word to an
API client (a1111-img2img-and-extra-networks.md B4, B6, B7): a night of images without the LoRA
they were for. So every tag of every positive prompt the job can send is checked, templates
filled with each value of their variables; an unknown LoRA is looked up again after one
`POST /refresh-loras` (B8), then reported with the others at the prompt's file:line:col.

Embeddings have no syntax: a prompt word is one if its tokens match, and an unknown one is plain
text (B5). So they are only warned about, never refused: a word naming an embedding that the
loaded model skips, and a word that looks like a name (`_`, a digit, inner capitals) and is
nearly one installed. Tags in a negative prompt are warned about too: A1111 reads them from
the positive prompt only, and sends the rest to CLIP as words.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from sdbatch.backends.a1111.applied import LORA_KINDS
from sdbatch.backends.a1111.facts import ServerFacts
from sdbatch.backends.a1111.installed import Embeddings, Installed
from sdbatch.errors import Problem
from sdbatch.job.loader import Job
from sdbatch.job.prompttags import (
    TAG,
    Tag,
    Where,
    job_texts,
    origin,
    renderings,
    tags,
    where,
)
from sdbatch.job.values import occurrences

log = logging.getLogger("sdbatch")

HYPERNET = "hypernet"
_NAME_LIKE = re.compile(r"[_\d]|[a-z][A-Z]")
_WORD = re.compile(r"[\w\-]+")

Hint = Callable[[str, Iterable[str]], str]  # preflight's did-you-mean


@dataclass(frozen=True)
class _Use:
    where: Where
    tag: Tag
    context: str  # which variables made the name, for the message


@dataclass
class _Scan:
    loras: list[_Use] = field(default_factory=list)
    hypernets: list[_Use] = field(default_factory=list)
    words: dict[tuple[Where, str], None] = field(default_factory=dict)  # texts CLIP reads
    problems: list[Problem] = field(default_factory=list)
    warnings: dict[str, None] = field(default_factory=dict)


def _scan(job: Job) -> _Scan:
    scan = _Scan()
    for text in job_texts(job):
        for rendered, chosen in renderings(text.template, job):
            for tag in tags(rendered):
                known = tag.kind in (*LORA_KINDS, HYPERNET)
                if not text.positive:
                    if known:
                        scan.warnings[
                            f"{text.where}: {tag.text} is not applied: A1111 reads extra "
                            "networks from the positive prompt only and sends this to CLIP as "
                            "words"
                        ] = None
                    continue
                if not known:
                    scan.warnings[
                        f"{text.where}: {tag.text}: unknown extra network type "
                        f"{tag.kind!r}; the webui strips the tag and applies nothing"
                    ] = None
                    continue
                lora = tag.kind in LORA_KINDS
                bad = tag.bad_number()
                if bad is not None:
                    # activate() raises, and the webui applies none of that kind to the image.
                    scan.problems.append(
                        text.where.problem(
                            f"the multiplier {bad!r} in {tag.text}{origin(bad, chosen)} is not "
                            f"a number: the webui would apply no "
                            f"{'LoRA' if lora else 'hypernetwork'} at all to that image"
                        )
                    )
                uses = scan.loras if lora else scan.hypernets
                uses.append(_Use(text.where, tag, origin(tag.name, chosen)))
            cleaned = TAG.sub(" ", rendered) if text.positive else rendered
            scan.words[(text.where, cleaned)] = None
    return scan


def check(job: Job, facts: ServerFacts, hint: Hint) -> list[Problem]:
    """Every unknown LoRA, hypernetwork and style `job` can send to the webui of `facts`
    (nothing when the facts were not read from a server); warnings are logged."""
    installed = facts.installed
    if installed is None:
        return []
    url = facts.url
    scan = _scan(job)
    problems = scan.problems

    def unknown(use: Where, what: str, name: str, choices: Iterable[str], context: str) -> None:
        listed = list(choices)
        tail = hint(name, listed) if listed else "; it has none"
        problems.append(use.problem(f"unknown {what} {name!r}{context} on {url}{tail}"))

    if scan.loras:
        loras = installed.loras()
        if loras is not None and not all(loras.knows(u.tag.name) for u in scan.loras):
            loras = installed.refresh_loras()  # a file copied in since the webui's last scan
        for use in scan.loras:
            name = use.tag.name
            if loras is None:
                problems.append(use.where.problem(_missing_route(url, "loras", use.tag)))
            elif shared := loras.sharing(name):
                files = ", ".join(map(repr, shared))
                message = f"the LoRA alias {name!r} is shared by {files} on {url}: name one file"
                problems.append(use.where.problem(message))
            elif not loras.knows(name):
                unknown(use.where, "LoRA", name, loras.choices, use.context)
    if scan.hypernets:
        hypernets = installed.hypernetworks()
        for use in scan.hypernets:
            if hypernets is None:
                problems.append(use.where.problem(_missing_route(url, "hypernetworks", use.tag)))
            elif use.tag.name not in hypernets:
                unknown(use.where, "hypernetwork", use.tag.name, hypernets, use.context)
    asked = [
        (where(job, (*found.path, k)), name)
        for found in occurrences(job, "styles")
        if isinstance(found.value, list)
        for k, name in enumerate(found.value)
        if isinstance(name, str)
    ]
    styles = installed.styles() if asked else ()
    for place, name in asked:
        if styles is None:
            problems.append(place.problem(f"{url} has no /sdapi/v1/prompt-styles"))
        elif name not in styles:
            unknown(place, "style", name, styles, "")
    _warn_embeddings(scan, installed, url)
    for message in scan.warnings:
        log.warning("%s", message)
    return problems


def _missing_route(url: str, route: str, tag: Tag) -> str:
    return (
        f"{url} has no /sdapi/v1/{route} (its extension is off?): the webui would drop "
        f"{tag.text} without a word"
    )


def _warn_embeddings(scan: _Scan, installed: Installed, url: str) -> None:
    embeddings = installed.embeddings() if scan.words else None
    if embeddings is None:
        return
    found = _embedding_words(scan, embeddings, url)
    if found:
        # The webui may not have scanned a file copied in since: look again once.
        embeddings = installed.refresh_embeddings()
        found = _embedding_words(scan, embeddings, url) if embeddings is not None else found
    scan.warnings.update(dict.fromkeys(found))


def _embedding_words(scan: _Scan, embeddings: Embeddings, url: str) -> list[str]:
    loaded = {name.casefold(): name for name in embeddings.loaded}
    skipped = {
        name.casefold(): name for name in embeddings.skipped if name.casefold() not in loaded
    }
    found: list[str] = []
    for place, text in scan.words:
        for word in dict.fromkeys(_WORD.findall(text)):
            folded = word.casefold()
            if folded in skipped:
                name = skipped[folded]
                width = embeddings.skipped[name]
                found.append(
                    f"{place}: the embedding {name!r} is installed on {url} but skipped, its "
                    f"vectors ({width} wide) do not fit the loaded checkpoint: {word!r} is read "
                    "as plain words"
                )
            elif folded not in loaded and len(word) >= 6 and _NAME_LIKE.search(word):
                close = difflib.get_close_matches(folded, list(loaded), n=1, cutoff=0.85)
                if close:
                    found.append(
                        f"{place}: {word!r} is no embedding on {url}: did you mean "
                        f"{loaded[close[0]]!r}? (as written it is plain words)"
                    )
    return found
