"""What a webui has installed besides checkpoints: LoRAs, embeddings, styles, hypernetworks.

Entry point: `Installed(url, session)`, which `inspect_server` puts in `ServerFacts.installed`.
Each list is read on first use, so a job that names none costs no request: /loras carries
every file's training metadata and runs to megabytes on a big library
(a1111-img2img-and-extra-networks.md B1). The webui caches its scans, so a file copied in
after startup is unknown until `POST /refresh-loras` (or `/refresh-embeddings`); each refresh
is sent at most once, and only when a name was not found (B8).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import requests

from sdbatch.backends.a1111.api import get_json, reading
from sdbatch.backends.a1111.responses import server_message
from sdbatch.backends.fetch import failure, fetch
from sdbatch.errors import ServerError, ServerUnreachableError

log = logging.getLogger("sdbatch")


@dataclass(frozen=True)
class Loras:
    """What a prompt's `<lora:NAME:…>` may name: a file stem, or an alias (`ss_output_name`)
    that no other file claims too (B3)."""

    names: tuple[str, ...]
    aliases: Mapping[str, tuple[str, ...]]  # alias -> the files that claim it

    @classmethod
    def from_json(cls, listed: Any) -> Loras:
        names: list[str] = []
        aliases: dict[str, list[str]] = {}
        for entry in listed if isinstance(listed, list) else ():
            name = str(entry.get("name"))
            names.append(name)
            alias = entry.get("alias")
            if alias and alias != name:
                aliases.setdefault(str(alias), []).append(name)
        return cls(tuple(names), MappingProxyType({a: tuple(f) for a, f in aliases.items()}))

    def knows(self, name: str) -> bool:
        return name in self.names or len(self.aliases.get(name, ())) == 1

    def sharing(self, alias: str) -> tuple[str, ...]:
        """The files behind an alias several of them claim, () otherwise."""
        files = self.aliases.get(alias, ())
        return files if len(files) > 1 and alias not in self.names else ()

    @property
    def choices(self) -> tuple[str, ...]:
        return (*self.names, *(a for a, files in self.aliases.items() if len(files) == 1))


@dataclass(frozen=True)
class Embeddings:
    loaded: tuple[str, ...]
    skipped: Mapping[str, Any]  # name -> vector width, for those the loaded model cannot use

    @classmethod
    def from_json(cls, listed: Any) -> Embeddings:
        listed = listed if isinstance(listed, Mapping) else {}
        loaded = listed.get("loaded") or {}
        skipped = listed.get("skipped") or {}
        return cls(
            tuple(map(str, loaded)),
            MappingProxyType({str(k): (v or {}).get("shape") for k, v in skipped.items()}),
        )


class Installed:
    """The lists of one webui, each fetched once when first asked for."""

    def __init__(self, url: str, session: requests.Session, *, timeout: float = 30) -> None:
        self.url = url
        self._base = url.rstrip("/")
        self._session = session
        self._timeout = timeout
        self._lists: dict[str, Any] = {}
        self._refreshed: set[str] = set()
        # The post-check asks for the embeddings of every image: parsed once per list read.
        self._embeddings: tuple[Any, Embeddings | None] = (None, None)

    def _get(self, path: str) -> Any:
        """The list, or None when the webui has no such route (404: the extension is off)."""
        if path not in self._lists:
            self._lists[path] = get_json(
                self._session, self.url, path, timeout=self._timeout, missing=None
            )
        return self._lists[path]

    def _refresh(self, route: str, listing: str) -> None:
        """POST a rescan once, then forget the list read before it."""
        if route in self._refreshed:
            return
        self._refreshed.add(route)
        try:
            answer = fetch(
                self._session, "POST", f"{self._base}/sdapi/v1/{route}", timeout=self._timeout
            )
        except requests.RequestException as exc:
            raise ServerUnreachableError(
                f"{self.url}: cannot reach the webui: {failure(exc)}"
            ) from exc
        if answer.status_code != 200:
            log.debug("%s: POST /sdapi/v1/%s: %s", self.url, route, server_message(answer))
            return  # nothing was rescanned: the list read before still holds
        self._lists.pop(listing, None)

    def loras(self) -> Loras | None:
        listed = self._get("loras")
        with reading(self.url, "loras"):
            return None if listed is None else Loras.from_json(listed)

    def refresh_loras(self) -> Loras | None:
        self._refresh("refresh-loras", "loras")
        return self.loras()

    def embeddings(self) -> Embeddings | None:
        # Only ever warned about, so a webui that cannot list them is no reason to stop.
        try:
            listed = self._get("embeddings")
        except ServerError as exc:
            log.debug("%s", exc)
            return None
        if listed is None:
            return None
        source, parsed = self._embeddings
        if source is not listed or parsed is None:
            with reading(self.url, "embeddings"):
                parsed = Embeddings.from_json(listed)
            self._embeddings = (listed, parsed)
        return parsed

    def refresh_embeddings(self) -> Embeddings | None:
        # The webui runs this rescan under its queue lock, so it waits for a running
        # generation; a timeout here is no reason to stop either.
        try:
            self._refresh("refresh-embeddings", "embeddings")
        except ServerError as exc:
            log.debug("%s", exc)
        return self.embeddings()

    def styles(self) -> tuple[str, ...] | None:
        listed = self._get("prompt-styles")
        with reading(self.url, "prompt-styles"):
            return None if listed is None else tuple(str(s.get("name")) for s in listed)

    def hypernetworks(self) -> tuple[str, ...] | None:
        listed = self._get("hypernetworks")
        with reading(self.url, "hypernetworks"):
            return None if listed is None else tuple(str(h.get("name")) for h in listed)
