"""The routes: what each path answers, independent of the HTTP plumbing in server.py.

`/sdapi/v1/*` follows the webui (and sits behind the optional Basic auth); `/mock/*` is the
test-only control surface (never behind auth).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sdbatch.standin.a1111 import extranets, img2img, model
from sdbatch.standin.a1111.errors import ApiError, Dropped, http_exception
from sdbatch.standin.a1111.host import Host
from sdbatch.standin.a1111.tamper import tampered


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: Mapping[str, list[str]]
    raw: bytes
    content_type: str | None
    authorization: str | None
    headers: Mapping[str, str] = field(default_factory=dict)  # all of them, for tamper.py


@dataclass
class Outcome:
    """Filled in while a request is handled, so the log knows what happened even on errors."""

    seeds: tuple[int, ...] = ()
    images: int = 0
    fault: str | None = None


Handler = Callable[[Host, Request, Outcome], Any]


def check_auth(webui: Host, header: str | None) -> None:
    """fastapi HTTPBasic + Api.auth; the 401s come without WWW-Authenticate (a1111-api.md §6)."""
    if webui.auth is None:
        return
    scheme, _, token = (header or "").partition(" ")
    # FastAPI's HTTPBasic sends WWW-Authenticate; only webuis that keep headers pass it on.
    basic = {"WWW-Authenticate": "Basic"}
    if not header or scheme.lower() != "basic":
        raise http_exception(401, "Not authenticated", basic)
    try:
        user, sep, password = base64.b64decode(token, validate=True).decode("ascii").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise http_exception(401, "Invalid authentication credentials", basic) from None
    if not sep:
        raise http_exception(401, "Invalid authentication credentials", basic)
    if (user, password) != webui.auth:
        raise http_exception(401, "Incorrect username or password", basic)


def txt2img(webui: Host, req: Request, out: Outcome) -> Any:
    """txt2img and img2img: one front (fault, body, auth), which server.py knows by identity."""
    fault = webui.faults.draw()
    if fault is not None:
        out.fault = fault.kind
        if fault.kind == "reset":
            raise Dropped
        if fault.kind == "fail":
            raise fault.error()
        # A hang holds no queue lock, so requests behind it go on; after the hang the request
        # is served normally, unless the server stops first.
        if webui.stopping.wait(fault.settings.hang_seconds):
            raise Dropped
    # FastAPI decodes the body before it resolves the auth dependency, then validates.
    v2 = webui.behaviour.pydantic_v2
    body = model.decode_body(req.raw, req.content_type, v2)
    check_auth(webui, req.authorization)
    if req.path == img2img.PATH:
        response, seeds = img2img.generate(webui, body)
    else:
        response, seeds = webui.txt2img(model.validate(body, webui.behaviour.fields, v2))
    out.seeds, out.images = seeds, len(response["images"])
    spoil = webui.faults.take_tamper()  # only an answer that was made can be spoiled
    if spoil is not None:
        out.fault = f"tamper:{spoil}"
        return tampered(spoil, response, req.headers, webui.faults.settings.retry_after)
    return response


# pydantic v1 parses a query bool from these words only.
_BOOL_WORDS = frozenset(["1", "0", "on", "off", "t", "f", "true", "false", "y", "n", "yes", "no"])


def progress(webui: Host, req: Request, out: Outcome) -> Any:
    for value in req.query.get("skip_current_image", []):
        if value.lower() not in _BOOL_WORDS:
            raise ApiError(
                422,
                {
                    "detail": [
                        {
                            "loc": ["query", "skip_current_image"],
                            "msg": "value could not be parsed to a boolean",
                            "type": "type_error.bool",
                        }
                    ]
                },
            )
    return webui.state.progress()


class NoContent:
    """Answer 204 without a body (SD.Next's /interrupt and /skip)."""


NO_CONTENT = NoContent()


def interrupt(webui: Host, req: Request, out: Outcome) -> Any:
    webui.state.interrupt()
    return NO_CONTENT if webui.behaviour.control_no_content else {}


def skip(webui: Host, req: Request, out: Outcome) -> Any:
    webui.state.skip()
    return NO_CONTENT if webui.behaviour.control_no_content else None


def get_options(webui: Host, req: Request, out: Outcome) -> Any:
    return webui.options_json()


def set_options(webui: Host, req: Request, out: Outcome) -> Any:
    body = model.decode_body(req.raw, req.content_type)
    if body is None:
        raise ApiError(
            422,
            {"detail": [{"loc": ["body"], "msg": "field required", "type": "value_error.missing"}]},
        )
    if not isinstance(body, dict):
        raise ApiError(
            422,
            {
                "detail": [
                    {"loc": ["body"], "msg": "value is not a valid dict", "type": "type_error.dict"}
                ]
            },
        )
    webui.set_options(body)
    return None


def _static(build: Callable[[Host], Any]) -> Handler:
    def handler(webui: Host, req: Request, out: Outcome) -> Any:
        return build(webui)

    return handler


def _scale(upscaler: str) -> float:
    """ "DAT x2" scales by 2; the rest by 4, as the real list says."""
    found = re.search(r" x(\d)$", upscaler)
    return float(found[1]) if found else 4.0


def _cmd_flags(webui: Host) -> dict[str, Any]:
    return {
        "api": True,
        "api_auth": ":".join(webui.auth) if webui.auth else None,
        "nowebui": True,
        "port": webui.port,
        "listen": webui.host not in ("127.0.0.1", "::1"),
        "api_server_stop": False,
        "cors_allow_origins": None,
        "timeout_keep_alive": 30,
    }


_MEMORY = {"ram": {"free": 12e9, "used": 4e9, "total": 16e9}, "cuda": {"error": "unavailable"}}


def mock_log(webui: Host, req: Request, out: Outcome) -> Any:
    return {
        **webui.recorder.as_json(),
        "faults": webui.faults.settings.as_json(),
        "behaviour": webui.behaviour.name,
        "substitute": webui.substitution.as_json(),
        "model_loads": webui.model_loads,
        "loaded_model": webui.loaded_model,
    }


def mock_faults(webui: Host, req: Request, out: Outcome) -> Any:
    if req.method == "POST":
        try:
            body = json.loads(req.raw or b"{}")
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            return webui.inject(**body).as_json()
        except (ValueError, TypeError) as exc:
            raise ApiError(400, {"detail": str(exc)}) from None
    return webui.faults.settings.as_json()


def mock_reset(webui: Host, req: Request, out: Outcome) -> Any:
    webui.reset()
    return {}


SDAPI = "/sdapi/v1/"

ROUTES: dict[str, dict[str, Handler]] = {
    "/sdapi/v1/txt2img": {"POST": txt2img},
    img2img.PATH: {"POST": txt2img},
    "/sdapi/v1/progress": {"GET": progress},
    "/sdapi/v1/interrupt": {"POST": interrupt},
    "/sdapi/v1/skip": {"POST": skip},
    "/sdapi/v1/options": {"GET": get_options, "POST": set_options},
    "/sdapi/v1/samplers": {"GET": _static(lambda w: w.behaviour.list_samplers(w.catalog))},
    "/sdapi/v1/schedulers": {"GET": _static(lambda w: w.behaviour.list_schedulers(w.catalog))},
    "/sdapi/v1/sd-models": {"GET": _static(lambda w: w.models())},
    "/sdapi/v1/upscalers": {
        "GET": _static(
            lambda w: [
                {
                    "name": n,
                    "model_name": None,
                    "model_path": None,
                    "model_url": None,
                    "scale": _scale(n),
                }
                for n in w.catalog.upscalers
            ]
        )
    },
    "/sdapi/v1/latent-upscale-modes": {
        "GET": _static(lambda w: [{"name": n} for n in w.catalog.latent_upscale_modes])
    },
    "/sdapi/v1/sd-vae": {"GET": _static(lambda w: [])},
    "/sdapi/v1/memory": {"GET": _static(lambda w: _MEMORY)},
    "/sdapi/v1/cmd-flags": {"GET": _static(_cmd_flags)},
    "/mock/log": {"GET": mock_log},
    "/mock/faults": {"GET": mock_faults, "POST": mock_faults},
    "/mock/reset": {"POST": mock_reset},
}

# Routes only some webuis have; a Behaviour names the ones it adds.
OPTIONAL: dict[str, dict[str, Handler]] = {
    # Forge: VAE and text encoders, SDModuleItem{model_name, filename}.
    "/sdapi/v1/sd-modules": {"GET": _static(lambda w: [])},
    # SD.Next: the build it runs.
    "/sdapi/v1/version": {"GET": _static(lambda w: dict(w.behaviour.extra["version"]))},
}


def routes_for(webui: Host) -> dict[str, dict[str, Handler]]:
    b = webui.behaviour
    table = {path: m for path, m in ROUTES.items() if path not in b.removed_routes}
    table.update(extranets.routes())  # LoRAs, embeddings, styles, hypernetworks
    table.update({path: OPTIONAL[path] for path in sorted(b.added_routes)})
    return table
