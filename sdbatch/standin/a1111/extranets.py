"""Extra networks and styles in the stand-in: the listing routes, and what a prompt's
`<lora:…>` tags, embedding words and `styles` do to a job (a1111-img2img-and-extra-networks.md
B1-B7).

- GET /loras, /embeddings, /prompt-styles, /hypernetworks in the v1.10.1 shapes; POST
  /refresh-loras and /refresh-embeddings answer null. LoRAs in the catalog's `pending_loras`
  stand for files copied in after startup: listed only after a refresh, yet found by a
  generation that names them, since the webui rescans for unknown names before giving up (B3).
- Styles are merged into the prompts (`{prompt}` placeholder, else appended with ", "); an
  unknown style is ignored, and the prompt only stripped (B6).
- A LoRA that loads adds `Lora hashes: "name-as-written: 12-hex"` to the infotext; a missing or
  broken one is dropped without a word (B4), and a non-numeric multiplier drops every LoRA of
  that pass. A loaded embedding named in a prompt adds `TI hashes` (B5); one whose width does
  not fit the loaded checkpoint is `skipped` and does nothing.

Not modelled: Forge's "one missing LoRA drops them all", the rescan showing up in /loras after
such a generation, hypernetworks changing anything, and refresh-embeddings waiting for the queue.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from sdbatch.standin.a1111.catalog import Catalog, Checkpoint
from sdbatch.standin.a1111.networks import Lora, Style

if TYPE_CHECKING:
    from sdbatch.standin.a1111.host import Host

# modules/extra_networks.re_extra_net: every `<type:args>` tag, whatever the type.
TAG = re.compile(r"<(\w+):([^>]+)>")
_LORA_TYPES = ("lora", "lyco")
_UNSAID = str.maketrans("", "", ":,")  # Lora hashes write the name without these
_NO_STYLE = Style("")

Handler = Callable[["Host", Any, Any], Any]


class _Shelf:
    """Which LoRA files the webui has scanned: the pending ones only after a refresh."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rescanned = False

    def rescan(self) -> None:
        with self._lock:
            self._rescanned = True

    def listed(self, catalog: Catalog) -> list[Lora]:
        with self._lock:
            pending = catalog.pending_loras if self._rescanned else ()
        return list(_scanned((*catalog.loras, *pending)).values())


def _scanned(loras: Iterable[Lora]) -> dict[str, Lora]:
    # available_networks is keyed by stem: two files with one stem, the last scanned wins.
    return {lora.name: lora for lora in loras}


def routes() -> dict[str, dict[str, Handler]]:
    """The routes of one server, with that server's own scan state."""
    shelf = _Shelf()

    def loras(webui: Host, req: object, out: object) -> Any:
        return [lora.as_json() for lora in shelf.listed(webui.catalog)]

    def refresh_loras(webui: Host, req: object, out: object) -> Any:
        shelf.rescan()
        return None

    def embeddings(webui: Host, req: object, out: object) -> Any:
        width = _text_width(webui.catalog.checkpoint(webui.loaded_model))
        listed: dict[str, dict[str, Any]] = {"loaded": {}, "skipped": {}}
        for embedding in webui.catalog.embeddings:
            side = "loaded" if embedding.shape == width else "skipped"
            listed[side][embedding.name] = embedding.as_json()
        return listed

    def nothing(webui: Host, req: object, out: object) -> Any:
        return None

    def styles(webui: Host, req: object, out: object) -> Any:
        return [style.as_json() for style in webui.catalog.styles]

    def hypernetworks(webui: Host, req: object, out: object) -> Any:
        return [net.as_json() for net in webui.catalog.hypernetworks]

    return {
        "/sdapi/v1/loras": {"GET": loras},
        "/sdapi/v1/refresh-loras": {"POST": refresh_loras},
        "/sdapi/v1/embeddings": {"GET": embeddings},
        "/sdapi/v1/refresh-embeddings": {"POST": nothing},
        "/sdapi/v1/prompt-styles": {"GET": styles},
        "/sdapi/v1/hypernetworks": {"GET": hypernetworks},
    }


def _text_width(checkpoint: Checkpoint | None) -> int:
    return checkpoint.text_width if checkpoint is not None else 768


def styled(req: Mapping[str, Any], catalog: Catalog) -> dict[str, str]:
    """The prompts after the request's styles, by field (empty without styles)."""
    names = req.get("styles") or []
    if not names:
        return {}
    known = {style.name: style for style in catalog.styles}
    out: dict[str, str] = {}
    for key in ("prompt", "negative_prompt", "hr_prompt", "hr_negative_prompt"):
        text = req.get(key)
        if not isinstance(text, str):
            continue
        for name in names:
            # styles.get(x, no_style): an unknown name adds nothing, yet strips the prompt.
            style = known.get(name, _NO_STYLE)
            text = _merge(style.negative_prompt if "negative" in key else style.prompt, text)
        out[key] = text
    return out


def _merge(style: str, prompt: str) -> str:
    if "{prompt}" in style:
        return style.replace("{prompt}", prompt)
    return ", ".join(part for part in (prompt.strip(), style.strip()) if part)


def infotext_params(
    req: Mapping[str, Any], opts: Mapping[str, Any], catalog: Catalog, checkpoint: Checkpoint
) -> dict[str, str]:
    """`Lora hashes` and `TI hashes` for a job whose prompts (styles applied) are in `req`."""
    params: dict[str, str] = {}
    positive = [req.get("prompt") or ""]
    if req.get("enable_hr") and req.get("hr_prompt"):
        positive.append(req["hr_prompt"])  # the second pass loads its own; both are listed
    if not req.get("disable_extra_networks") and opts.get("lora_add_hashes_to_infotext", True):
        found = _scanned((*catalog.loras, *catalog.pending_loras))
        lookup = {key: lora for lora in found.values() for key in (lora.name, lora.alias)}
        hashes: dict[str, str] = {}
        for text in positive:
            hashes.update(_loaded(text, lookup))
        if hashes:
            params["Lora hashes"] = ", ".join(f"{k}: {v}" for k, v in hashes.items())
    if opts.get("textual_inversion_add_hashes_to_infotext", True):
        width = _text_width(checkpoint)
        usable = [e for e in catalog.embeddings if e.shape == width]
        # CLIP never sees the positive prompt's tags; the negative prompt keeps them.
        texts = [TAG.sub("", text) for text in positive] + [req.get("negative_prompt") or ""]
        used: dict[str, str] = {}
        for text in texts:
            hits = []
            for e in usable:
                match = re.search(rf"(?<!\w){re.escape(e.name)}(?!\w)", text, re.IGNORECASE)
                if match:
                    hits.append((match.start(), e.name, e.shorthash))
            used.update({name: short for _, name, short in sorted(hits) if name not in used})
        if used:
            params["TI hashes"] = ", ".join(f"{k}: {v}" for k, v in used.items())
    return params


def _loaded(text: str, lookup: Mapping[str, Lora]) -> dict[str, str]:
    """name as written -> short hash of each LoRA this pass really applies."""
    out: dict[str, str] = {}
    for kind, args in TAG.findall(text):
        if kind not in _LORA_TYPES:
            continue
        name, *rest = args.split(":")
        try:
            for item in rest:
                key, sep, value = item.partition("=")
                if not sep:
                    float(item)
                elif key in ("te", "unet"):
                    float(value)
                elif key == "dyn":
                    int(value)
        except ValueError:
            return {}  # activate() raises, and the pass runs with no LoRA at all
        lora = lookup.get(name)
        if lora is not None and not lora.broken:
            out[name.translate(_UNSAID)] = lora.shorthash
    return out
