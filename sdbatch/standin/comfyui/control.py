"""The stand-in's own routes, for tests that run it as a separate process (`python -m
sdbatch.standin.comfyui`) and cannot call `Host` methods: the real ComfyUI has none of
these, and they live under `/mock/` where no ComfyUI route is.

- `POST /mock/faults` {setting: value, ...}: change fault settings (faults.py); answers them all.
  `{"clear": true}` resets them. An unknown setting is a 400 naming it.
- `POST /mock/drop_sockets`: close every WebSocket from the server side.
- `GET /mock/log`: the request log and the prompts run (records.py), as JSON.
"""

from __future__ import annotations

import dataclasses
import json

from sdbatch.standin.comfyui.host import Host
from sdbatch.standin.comfyui.routes import Answer, Handler, Request, as_json


def faults(comfy: Host, req: Request) -> Answer:
    try:
        body = json.loads(req.raw or b"{}")
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object of fault settings")
        if body.pop("clear", False):
            comfy.faults.clear()
        settings = comfy.inject(**body)
    except (ValueError, TypeError) as exc:
        return as_json({"error": str(exc)}, 400)
    return as_json(dataclasses.asdict(settings))


def drop_sockets(comfy: Host, req: Request) -> Answer:
    comfy.drop_sockets()
    return as_json({"dropped": True})


def log(comfy: Host, req: Request) -> Answer:
    requests = [
        {
            "method": r.method,
            "path": r.path,
            "query": r.query,
            "body": r.body,
            "status": r.status,
            "time": r.time,
        }
        for r in comfy.recorder.requests
    ]
    executions = [dataclasses.asdict(e) for e in comfy.recorder.executions]
    return as_json({"requests": requests, "executions": executions})


ROUTES: dict[tuple[str, str], Handler] = {
    ("POST", "/mock/faults"): faults,
    ("POST", "/mock/drop_sockets"): drop_sockets,
    ("GET", "/mock/log"): log,
}
