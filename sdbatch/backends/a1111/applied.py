"""After an image: were the LoRAs and embeddings its prompts name really applied?

Entry point: `dropped_networks(sent, params, embeddings) -> {key: [asked, listed, note]}`, run
by the post-check for each image. Why: the infotext's `Lora hashes` and `TI hashes` are the only
trace an API client gets of what the webui applied (a1111-img2img-and-extra-networks.md B4,
B5). A LoRA whose file is missing or broken, or that Forge dropped with the others of its
prompt, is simply absent there; so is an embedding the loaded checkpoint cannot use, or one
deleted since the preflight read the list. Preflight catches what it can before the run; this
catches what only the server knows, image by image.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from sdbatch.job.prompttags import TAG, tags

LORA_KINDS = ("lora", "lyco")
_UNSAID = str.maketrans("", "", ":,")  # `Lora hashes` writes the name without these


def dropped_networks(
    sent: Mapping[str, Any], params: Mapping[str, str], embeddings: Iterable[str] = ()
) -> dict[str, list[Any]]:
    """`lora` and `embedding` differences of one image; `embeddings`: the names the webui
    listed as loaded at preflight (a word of the prompt is an embedding only if one is)."""
    settings = sent.get("override_settings")
    settings = settings if isinstance(settings, Mapping) else {}
    if not params:
        return {}  # no infotext: no evidence either way
    diffs: dict[str, list[Any]] = {}
    # Told not to list them, the webui's silence is no evidence.
    if (
        not sent.get("disable_extra_networks")
        and settings.get("lora_add_hashes_to_infotext") is not False
    ):
        diffs.update(dropped_loras(sent, params))
    if settings.get("textual_inversion_add_hashes_to_infotext") is not False:
        diffs.update(_dropped_embeddings(sent, params, embeddings))
    return diffs


def _positive(sent: Mapping[str, Any]) -> list[str]:
    texts = [sent.get("prompt")]
    if sent.get("enable_hr"):
        texts.append(sent.get("hr_prompt"))  # the second pass loads its own networks
    return [t for t in texts if isinstance(t, str)]


def asked_loras(sent: Mapping[str, Any]) -> dict[str, str]:
    """The LoRAs a payload's positive prompts name, as `Lora hashes` writes each name -> the
    tag as written."""
    asked: dict[str, str] = {}
    for text in _positive(sent):
        for tag in tags(text):
            if tag.kind in LORA_KINDS:
                asked.setdefault(tag.name.translate(_UNSAID), tag.text)
    return asked


def _listed(params: Mapping[str, str], key: str) -> list[str]:
    """The names of a `name: hash, name: hash` infotext parameter."""
    return [
        item.rpartition(": ")[0].strip() for item in params.get(key, "").split(",") if ": " in item
    ]


def dropped_loras(sent: Mapping[str, Any], params: Mapping[str, str]) -> dict[str, list[Any]]:
    """`{"lora": [asked, listed, note]}` when `Lora hashes` leaves out a LoRA the prompt asked
    for (callers have checked that the webui was not told to leave them all out)."""
    asked = asked_loras(sent)
    listed = _listed(params, "Lora hashes")
    missing = [text for name, text in asked.items() if name not in listed]
    if not missing:
        return {}
    note = (
        f"the webui dropped {', '.join(missing)}: its Lora hashes do not list "
        f"{'it' if len(missing) == 1 else 'them'} (the file is missing or broken, or the name "
        "unknown to it; A1111 says so only on its own console)"
    )
    return {"lora": [list(asked), listed, note]}


def _dropped_embeddings(
    sent: Mapping[str, Any], params: Mapping[str, str], embeddings: Iterable[str]
) -> dict[str, list[Any]]:
    """`{"embedding": [asked, listed, note]}` when a prompt word names a loaded embedding that
    `TI hashes` does not list. Both prompts count (B5); tags are no words to CLIP."""
    texts = [TAG.sub("", text) for text in _positive(sent)]
    negative = sent.get("negative_prompt")
    if isinstance(negative, str):
        texts.append(negative)
    asked: list[str] = []
    for name in embeddings:
        # The tokenizer lowercases, so the webui finds a name whatever its case.
        word = re.compile(rf"(?<!\w){re.escape(name)}(?!\w)", re.IGNORECASE)
        if any(word.search(text) for text in texts):
            asked.append(name)
    listed = _listed(params, "TI hashes")
    folded = {name.casefold() for name in listed}
    missing = [name for name in asked if name.casefold() not in folded]
    if not missing:
        return {}
    note = (
        f"the webui did not apply the embedding{'s' if len(missing) > 1 else ''} "
        f"{', '.join(repr(m) for m in missing)}: its TI hashes do not list "
        f"{'it' if len(missing) == 1 else 'them'} (the file was removed, or its vectors do not "
        "fit the checkpoint this image used), so the word was read as plain text"
    )
    return {"embedding": [asked, listed, note]}
