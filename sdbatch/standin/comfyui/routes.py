"""The stand-in's HTTP routes: what each answers, status and body as the real 0.3.64's
(tests/data/real-comfyui). Every route is served under `/api/` too (server.py strips it).

JSON answers are aiohttp's `json_response`: `application/json; charset=utf-8`, `json.dumps`
with its default separators. Plain acknowledgements (POST /queue, /interrupt, /history, /free)
and /view's refusals are empty bodies without a content type.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sdbatch.standin.comfyui.host import Host
from sdbatch.standin.comfyui.validate import Rejected, check

SERVER_ERROR = b"500 Internal Server Error\n\nServer got itself in trouble"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    raw: bytes


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


def as_json(value: Any, status: int = 200) -> Answer:
    return Answer(status, json.dumps(value).encode("utf-8"), "application/json; charset=utf-8")


def server_error() -> Answer:
    return Answer(500, SERVER_ERROR, "text/plain; charset=utf-8")


def _body(req: Request) -> Any:
    """The JSON body, or None when there is none or it does not parse (acknowledging routes
    then do nothing, as the real ones do)."""
    try:
        return json.loads(req.raw) if req.raw else None
    except ValueError:
        return None


def system_stats(comfy: Host, req: Request) -> Answer:
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") if os.name == "posix" else 0
    system = {
        "os": os.name,
        "ram_total": pages,
        "ram_free": pages // 2,
        "comfyui_version": comfy.version,
        "required_frontend_version": "1.27.10",
        "installed_templates_version": "0.1.95",
        "required_templates_version": "0.1.95",
        "python_version": sys.version,
        "pytorch_version": "none (sdbatch stand-in)",
        "embedded_python": False,
        "argv": ["sdbatch-standin-comfyui", platform.node()],
    }
    device = {
        "name": "cpu",
        "type": "cpu",
        "index": None,
        "vram_total": pages,
        "vram_free": pages // 2,
        "torch_vram_total": pages,
        "torch_vram_free": pages // 2,
    }
    return as_json({"system": system, "devices": [device]})


def object_info(comfy: Host, req: Request) -> Answer:
    name = req.path.removeprefix("/object_info").strip("/") or None
    return as_json(comfy.catalog.object_info(comfy.saver.inputs(), name))


def models(comfy: Host, req: Request) -> Answer:
    folder = req.path.removeprefix("/models").strip("/")
    if not folder:
        return as_json(list(comfy.model_folders()))
    files = comfy.catalog.folder(folder)
    return Answer(404) if files is None else as_json(files)


def embeddings(comfy: Host, req: Request) -> Answer:
    return as_json(list(comfy.catalog.embeddings))


def features(comfy: Host, req: Request) -> Answer:
    return as_json({"supports_preview_metadata": True, "max_upload_size": 104857600})


def get_prompt(comfy: Host, req: Request) -> Answer:
    return as_json({"exec_info": {"queue_remaining": comfy.queue.remaining()}})


def post_prompt(comfy: Host, req: Request) -> Answer:
    try:
        body = json.loads(req.raw)
    except ValueError:
        return server_error()  # aiohttp's page for the unhandled decode error
    if isinstance(body, list | str) and "prompt" not in body:
        body = {}  # `"prompt" in body` is false for these too: a numbered no_prompt 400
    if not isinstance(body, dict):
        return server_error()
    failure = comfy.faults.take_http_failure()
    if failure is not None:
        return Answer(failure, SERVER_ERROR, "text/plain; charset=utf-8")
    if "number" in body:
        number: float = float(body["number"])
    else:  # a number is used up even by a prompt that fails validation (recorded)
        number = comfy.queue.next_number(bool(body.get("front")))
    try:
        checked = check(body, comfy.catalog, comfy.saver.inputs())
    except Rejected as exc:
        return as_json(exc.body, 400)
    except TypeError:
        return server_error()
    prompt_id = str(body.get("prompt_id") or uuid.uuid4())
    extra = dict(body.get("extra_data") or {})
    if "client_id" in body:
        extra["client_id"] = body["client_id"]
    comfy.enqueue(number, prompt_id, body["prompt"], extra, checked.outputs)
    return as_json({"prompt_id": prompt_id, "number": number, "node_errors": checked.node_errors})


def get_queue(comfy: Host, req: Request) -> Answer:
    return as_json(comfy.queue.snapshot())


def _clear_or_delete(
    req: Request, clear: Callable[[], None], delete: Callable[[Iterable[str]], None]
) -> Answer:
    """POST /queue and POST /history take the same body: {"clear": true} and/or
    {"delete": [prompt ids]}; anything else is ignored, with a 200, as the real server does."""
    body = _body(req)
    if isinstance(body, dict):
        if body.get("clear"):
            clear()
        if isinstance(body.get("delete"), list):
            delete(str(i) for i in body["delete"])
    return Answer(200)


def post_queue(comfy: Host, req: Request) -> Answer:
    return _clear_or_delete(req, comfy.queue.clear, comfy.queue.delete)


def interrupt(comfy: Host, req: Request) -> Answer:
    body = _body(req)
    target = body.get("prompt_id") if isinstance(body, dict) else None
    comfy.interrupt(str(target) if target is not None else None)
    return Answer(200)


def free(comfy: Host, req: Request) -> Answer:
    body = _body(req)
    if isinstance(body, dict) and body.get("free_memory"):
        comfy.reset_cache()
    return Answer(200)


def get_history(comfy: Host, req: Request) -> Answer:
    prompt_id = req.path.removeprefix("/history").strip("/")
    if prompt_id:
        return as_json(comfy.queue.history_of(prompt_id))
    try:
        max_items = int(req.query["max_items"]) if "max_items" in req.query else None
        offset = int(req.query.get("offset", -1))
    except ValueError:
        return server_error()
    return as_json(comfy.queue.history(max_items, offset))


def post_history(comfy: Host, req: Request) -> Answer:
    return _clear_or_delete(req, comfy.queue.clear_history, comfy.queue.delete_history)


def view(comfy: Host, req: Request) -> Answer:
    filename = req.query.get("filename", "")
    status, path = comfy.saver.view(
        filename, req.query.get("subfolder", ""), req.query.get("type", "output")
    )
    if path is None:
        return Answer(status)
    headers = {"Content-Disposition": f'filename="{path.name}"'}
    return Answer(200, path.read_bytes(), "image/png", headers)


Handler = Callable[[Host, Request], Answer]
ROUTES: dict[tuple[str, str], Handler] = {
    ("GET", "/system_stats"): system_stats,
    ("GET", "/object_info"): object_info,
    ("GET", "/models"): models,
    ("GET", "/embeddings"): embeddings,
    ("GET", "/features"): features,
    ("GET", "/prompt"): get_prompt,
    ("POST", "/prompt"): post_prompt,
    ("GET", "/queue"): get_queue,
    ("POST", "/queue"): post_queue,
    ("POST", "/interrupt"): interrupt,
    ("POST", "/free"): free,
    ("GET", "/history"): get_history,
    ("POST", "/history"): post_history,
    ("GET", "/view"): view,
}
PREFIXED = {"/object_info", "/models", "/history"}  # these also take /{name}


def find(method: str, path: str) -> Handler | None:
    handler = ROUTES.get((method, path))
    if handler is None:
        head = "/" + path.strip("/").split("/", 1)[0]
        if head in PREFIXED and path.count("/") == 2:
            handler = ROUTES.get((method, head))
    return handler
