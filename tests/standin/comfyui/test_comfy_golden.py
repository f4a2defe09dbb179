"""The stand-in ComfyUI held to the real ComfyUI 0.3.64: each recorded request
(tests/data/real-comfyui, see its README) is sent again to a fresh stand-in set up with the same
models, and the answers must agree — status, content type, body (exactly, or keys and types
where the value is the machine's own), the 400 bodies, /view's refusals — and so must what a
sequence of prompts does: the WebSocket messages in order with their keys and values, history,
file names, the cache (an identical prompt replays the old files), a runtime error."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from comfyhelp import (
    CAPTURE_CATALOG,
    REAL,
    TIMEOUT,
    history,
    listening,
    neutral,
    request_of,
    run,
    shape,
)

from sdbatch.standin.comfyui import Catalog, MockComfy

# Answers that are the machine's (RAM, python, argv): compared by keys and types only.
MACHINE = {"captured/system_stats", "captured/api_prefix_system_stats", "own/get/system_stats"}
GETS = sorted(
    name
    for name, entry in REAL.items()
    if isinstance(entry, dict)
    and isinstance(entry.get("request"), dict)
    and entry["request"]["method"] == "GET"
    and not name.endswith(("_history", "_after_clear", "_busy", "_after_delete", "_pending"))
    and "prompt_get_while_busy" not in name
)
# A refused prompt (400, or a 500 for a body that is not JSON); a 200 is test_comfy_golden_runs'.
REJECTED = sorted(n for n in REAL if "/invalid_" in n and REAL[n]["status"] != 200)


def catalog_for(name: str) -> Catalog:
    """The capture's first session had only tiny_sd15_random; this session's setup has all three."""
    return CAPTURE_CATALOG if name.startswith("captured/") else Catalog()


def send(comfy: MockComfy, recorded: dict[str, Any]) -> requests.Response:
    request = recorded["request"]
    if request["json"] is None and request["method"] == "POST":
        raw = request.get("raw", "{not json").encode("latin-1")
        return requests.post(comfy.url + request["path"], data=raw, timeout=TIMEOUT)
    return requests.request(
        request["method"], comfy.url + request["path"], json=request["json"], timeout=TIMEOUT
    )


def agrees(recorded: dict[str, Any], response: requests.Response, *, exact: bool = True) -> None:
    assert response.status_code == recorded["status"]
    if recorded["content_type"] != "(not recorded)":
        assert response.headers.get("content-type") == recorded["content_type"]
    want = recorded["body"]
    if not isinstance(want, dict | list):
        assert response.text == want
        return
    got = response.json()
    if exact:
        assert neutral(got) == neutral(want)
    else:
        assert shape(got) == shape(want)


@pytest.mark.parametrize("name", GETS)
def test_get_answers_as_recorded(name: str) -> None:
    with MockComfy(catalog=catalog_for(name)) as comfy:
        agrees(REAL[name], send(comfy, REAL[name]), exact=name not in MACHINE)


@pytest.mark.parametrize("name", REJECTED)
def test_rejections_as_recorded(name: str) -> None:
    """The 400 bodies, field for field (a traceback by shape), and nothing queued."""
    with MockComfy(catalog=catalog_for(name)) as comfy:
        agrees(REAL[name], send(comfy, REAL[name]))
        assert comfy.queue.remaining() == 0
        assert comfy.recorder.executions == []


def _ws_run(
    comfy: MockComfy, client: str, names: list[str], ws_of: dict[str, str]
) -> dict[str, tuple[str, list[Any]]]:
    """Post each recorded prompt in turn (as `client`), wait for each: name -> (id, messages)."""
    done = {}
    with listening(comfy, client) as ws:
        for name in names:
            body = {**request_of(f"{name}_post")["json"], "client_id": client}
            done[name] = run(comfy, ws, body)
    return done


def _compare_run(
    name: str, ws_key: str, prompt_id: str, messages: list[Any], comfy: MockComfy, history_key: str
) -> None:
    real_ws = REAL[ws_key]
    assert neutral(messages) == neutral(real_ws), ws_key
    got = history(comfy, prompt_id)
    (want,) = REAL[history_key]["body"].values()
    got["prompt"][3].pop("client_id")
    want["prompt"][3].pop("client_id", None)
    assert neutral(got) == neutral(want), history_key


def test_own_prompt_chain_as_recorded() -> None:
    """This session's recording on a fresh real server: a fresh prompt (every node runs, in the
    real order), the identical prompt (all cached: the OLD files replayed, none written), a new
    seed with extra PNG info, a PreviewImage, the broken checkpoint's runtime error, and a run
    after it — message for message, history entry for entry, file names included."""
    names = ["fresh", "identical", "pnginfo", "preview", "broken", "after_broken"]
    with MockComfy() as comfy:
        done = _ws_run(comfy, "rec-client", [f"own/{n}" for n in names], {})
        for name in names:
            prompt_id, messages = done[f"own/{name}"]
            _compare_run(name, f"own/{name}_ws", prompt_id, messages, comfy, f"own/{name}_history")
        files = [e.files for e in comfy.recorder.executions]
        assert files[1] == ()  # the identical prompt wrote nothing
        assert files[0] == ("output/rec/p_00001_.png", "output/rec/p_00002_.png")


def _chunks(png: bytes) -> list[list[Any]]:
    """The PNG's chunks as the recording lists them: text chunks with their text, the others
    by name (IDAT left out)."""
    import struct
    import zlib

    found: list[list[Any]] = []
    i = 8
    while i < len(png):
        (n,) = struct.unpack(">I", png[i : i + 4])
        kind, data = png[i + 4 : i + 8], png[i + 8 : i + 8 + n]
        if kind == b"tEXt":
            key, value = data.split(b"\0", 1)
            found.append([key.decode("latin-1"), value.decode("latin-1")])
        elif kind != b"IDAT":
            found.append([kind.decode(), zlib.crc32(data)])
        i += 12 + n
    return found


@pytest.mark.parametrize("name", ["fresh", "pnginfo"])
def test_png_text_chunks_as_recorded(name: str) -> None:
    """`prompt` is json.dumps of the graph; each extra_pnginfo key its own chunk, JSON-quoted."""
    with MockComfy() as comfy, listening(comfy, "c") as ws:
        body = {**request_of(f"own/{name}_post")["json"], "client_id": "c"}
        prompt_id, _ = run(comfy, ws, body)
        image = history(comfy, prompt_id)["outputs"]["9"]["images"][0]
        view = requests.get(comfy.url + "/view", params=image, timeout=TIMEOUT)
    assert view.status_code == 200
    assert view.headers["content-type"] == "image/png"
    assert _chunks(view.content) == REAL[f"own/{name}_view"]["chunks"]


def test_captured_chain_as_recorded() -> None:
    """The shared capture's first prompts: seed 42 (loader and texts cached from before), the
    same again (fully cached, the old names), seed 43 with a workflow chunk, seed 42 again —
    which runs again: the cache holds only the previous prompt."""
    names = ["run1_fresh", "run2_identical", "run3_newseed_pnginfo", "run4_seed42_again"]
    with MockComfy(catalog=CAPTURE_CATALOG) as comfy:
        warm = request_of("captured/run1_fresh_post")["json"]
        warm = {**warm, "prompt": {**warm["prompt"]}}
        warm["prompt"]["3"] = {
            **warm["prompt"]["3"],
            "inputs": {**warm["prompt"]["3"]["inputs"], "seed": 41},
        }
        with listening(comfy, "warm") as ws:
            run(comfy, ws, {**warm, "client_id": "warm"})
        done = _ws_run(comfy, "exercise", [f"captured/{n}" for n in names], {})
        for name in names:
            messages = done[f"captured/{name}"][1]
            want = REAL[f"captured/ws/{name}"]
            assert [m["type"] for m in messages] == [m["type"] for m in want], name
            for got_m, want_m in zip(messages, want, strict=True):
                assert shape(got_m) == shape(want_m), name
                data, real = got_m["data"], want_m["data"]
                for field in ("node", "nodes", "value", "max"):
                    assert neutral(data.get(field)) == neutral(real.get(field)), (name, field)
        outputs = [history(comfy, done[f"captured/{n}"][0])["outputs"]["9"] for n in names]
    # The names: the warm-up wrote 1-2; run1 3-4, replayed by run2; run3 5-6; run4 7-8.
    assert outputs[1] == outputs[0]
    assert outputs[3] != outputs[0]
    assert [i["filename"] for i in outputs[3]["images"]] == [
        "batchtest_00007_.png",
        "batchtest_00008_.png",
    ]
