"""What a ComfyUI server offers: its version and its node classes with their inputs.

Entry point: `inspect_server(url, session, timeout=...) -> ComfyFacts`, from GET /system_stats
(`system.comfyui_version`) and GET /object_info (every node class; a list-valued input is
`[[choices...], {...}]`, a number `["INT"|"FLOAT", {min, max, ...}]`). Also `server_kind`, the
probe the registry uses when the job names no server type.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests

from sdbatch.backends.fetch import COMFY_HINT, failure, fetch
from sdbatch.errors import ServerError, ServerUnreachableError


@dataclass(frozen=True)
class ComfyFacts:
    url: str
    version: str
    classes: Mapping[str, Any]  # /object_info as served

    def spec(self, class_type: str, name: str) -> tuple[Any, Mapping[str, Any]] | None:
        """(kind or choices, options) of one input of a node class; None when unknown."""
        info = self.classes.get(class_type)
        if not isinstance(info, Mapping):
            return None
        inputs = info.get("input", {})
        for group in ("required", "optional"):
            entry = inputs.get(group, {}).get(name)
            if isinstance(entry, list) and entry:
                options = entry[1] if len(entry) > 1 and isinstance(entry[1], Mapping) else {}
                return entry[0], options
        return None

    def choices(self, class_type: str, name: str) -> list[str]:
        spec = self.spec(class_type, name)
        if spec is None:
            return []
        # A list input is `[[choices], {...}]`, or `["COMBO", {"options": [...]}]` (newer nodes)
        listed = spec[0] if isinstance(spec[0], list) else spec[1].get("options")
        return [str(c) for c in listed] if isinstance(listed, list) else []


def _get(session: requests.Session, url: str, timeout: float) -> Any:
    try:
        answer = fetch(session, "GET", url, timeout=timeout)
    except requests.RequestException as exc:
        raise ServerUnreachableError(
            f"cannot reach ComfyUI at {url}: {failure(exc, hint=COMFY_HINT)}"
        ) from exc
    if answer.status_code != 200:
        raise ServerError(f"{url} answered HTTP {answer.status_code}: is this ComfyUI?")
    try:
        return answer.json()
    except ValueError as exc:
        raise ServerError(f"{url} answered no JSON: is this ComfyUI?") from exc


def inspect_server(url: str, session: requests.Session, *, timeout: float = 30) -> ComfyFacts:
    base = url.rstrip("/")
    stats = _get(session, base + "/system_stats", timeout)
    classes = _get(session, base + "/object_info", timeout)
    if not isinstance(stats, Mapping) or not isinstance(classes, Mapping):
        raise ServerError(f"{url} does not answer as ComfyUI does (/system_stats, /object_info)")
    system = stats.get("system")
    version = str(system.get("comfyui_version", "")) if isinstance(system, Mapping) else ""
    return ComfyFacts(url, version, classes)


def server_kind(url: str, session: requests.Session, *, timeout: float = 10) -> str | None:
    """ "comfyui" when `url` answers /system_stats as ComfyUI does (A1111 answers 404 there),
    "a1111" for any other answer, None when there is no answer at all (down, or too slow):
    a server that cannot be asked tells nothing of its kind."""
    try:
        answer = fetch(session, "GET", url.rstrip("/") + "/system_stats", timeout=timeout)
    except requests.RequestException:
        return None
    try:
        body = answer.json() if answer.status_code == 200 else None
    except ValueError:
        body = None
    comfy = isinstance(body, Mapping) and isinstance(body.get("system"), Mapping)
    return "comfyui" if comfy else "a1111"
