"""The stand-in ComfyUI's behaviour where the recordings hold no transcript to replay: the cache
trap in full, the fault hooks, /view's confinement, /history paging, the request log and a
prompt with one bad output (pictures: test_comfy_pictures.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import requests
from comfyhelp import (
    TIMEOUT,
    files,
    graph,
    history,
    images,
    listening,
    post,
    run,
    types,
    until_done,
    view,
)
from PIL import Image
from websockets.exceptions import ConnectionClosed

from sdbatch.standin.comfyui import Catalog, MockComfy


# -- the cache trap -------------------------------------------------------------------------
def test_identical_prompt_replays_old_files_that_may_be_gone() -> None:
    """An identical prompt (other node ids and PNG info too) runs nothing, writes nothing and
    names the old files; once those are deleted, /view answers 404 for what history lists."""
    with MockComfy() as comfy, listening(comfy, "c") as ws:
        first, _ = run(comfy, ws, {"prompt": graph(), "client_id": "c"})
        written = files(comfy)
        renamed = {f"x{k}": v for k, v in graph().items()}
        for node in renamed.values():
            for name, value in node["inputs"].items():
                if isinstance(value, list):
                    node["inputs"][name] = [f"x{value[0]}", value[1]]
        body = {"prompt": renamed, "client_id": "c", "extra_data": {"extra_pnginfo": {"a": 1}}}
        again, messages = run(comfy, ws, body)
        assert files(comfy) == written
        assert images(comfy, again, "x9") == images(comfy, first)
        assert "executing" not in types(messages[:-1])
        for image in images(comfy, first):
            (comfy.output_dir / image["subfolder"] / image["filename"]).unlink()
        assert [view(comfy, i).status_code for i in images(comfy, again, "x9")] == [404, 404]


def test_only_what_changed_runs_again() -> None:
    """A new prefix re-runs SaveImage alone (the same pixels under new names); a new seed re-runs
    the sampler, the decoder and SaveImage; the cache holds only the previous prompt."""
    with MockComfy() as comfy, listening(comfy, "c") as ws:
        run(comfy, ws, {"prompt": graph(), "client_id": "c"})
        run(comfy, ws, {"prompt": graph(n9_filename_prefix="other"), "client_id": "c"})
        run(comfy, ws, {"prompt": graph(n3_seed=12), "client_id": "c"})
        run(comfy, ws, {"prompt": graph(), "client_id": "c"})
        ran = [e.ran for e in comfy.recorder.executions]
        assert ran == [
            ("4", "5", "7", "6", "3", "8", "9"),
            ("9",),
            ("3", "8", "9"),
            ("3", "8", "9"),
        ]
        same = [comfy.output_dir / "other_00001_.png", comfy.output_dir / "rec" / "p_00001_.png"]
        pixels = []
        for path in same:
            with Image.open(path) as img:
                pixels.append(img.tobytes())
        assert pixels[0] == pixels[1]


def test_free_memory_empties_the_cache_after_the_next_prompt() -> None:
    with MockComfy() as comfy, listening(comfy, "c") as ws:
        run(comfy, ws, {"prompt": graph(), "client_id": "c"})
        requests.post(comfy.url + "/free", json={"free_memory": True}, timeout=TIMEOUT)
        run(comfy, ws, {"prompt": graph(n3_seed=99), "client_id": "c"})  # still cached
        run(comfy, ws, {"prompt": graph(n3_seed=99), "client_id": "c"})  # cache emptied
        ran = [len(e.ran) for e in comfy.recorder.executions]
    assert ran == [7, 3, 7]


# -- faults and failures ---------------------------------------------------------------------
def test_injected_runtime_error_fails_at_the_sampler() -> None:
    with MockComfy() as comfy, listening(comfy, "c") as ws:
        comfy.inject(error_next=1)
        prompt_id, messages = run(comfy, ws, {"prompt": graph(), "client_id": "c"})
        error = next(m["data"] for m in messages if m["type"] == "execution_error")
        assert (error["node_id"], error["node_type"]) == ("3", "KSampler")
        assert error["exception_type"] == "torch.OutOfMemoryError"
        assert history(comfy, prompt_id)["status"]["status_str"] == "error"
        second, _ = run(comfy, ws, {"prompt": graph(), "client_id": "c"})  # used up
        assert history(comfy, second)["status"]["status_str"] == "success"
        assert comfy.recorder.executions[1].ran == ("3", "8", "9")  # loader and texts cached


def test_injected_http_failure_queues_nothing() -> None:
    with MockComfy() as comfy:
        comfy.inject(http_fail_next=1)
        failed = post(comfy, {"prompt": graph()})
        assert (failed.status_code, failed.headers["content-type"]) == (
            500,
            "text/plain; charset=utf-8",
        )
        assert comfy.queue.remaining() == 0 and comfy.recorder.executions == []
        assert post(comfy, {"prompt": graph()}).status_code == 200


def test_muted_and_dropped_sockets() -> None:
    """`ws_mute`: the socket stays open and silent while history fills; `drop_sockets()`
    closes the client's socket from the server side."""
    with MockComfy() as comfy, listening(comfy, "c") as ws:
        comfy.inject(ws_mute=True)
        prompt_id = post(comfy, {"prompt": graph(), "client_id": "c"}).json()["prompt_id"]
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.5)
        assert history(comfy, prompt_id)["status"]["completed"] is True
        comfy.drop_sockets()
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=TIMEOUT)


def test_prefix_leaving_the_output_folder_fails_at_run_time(tmp_path: Path) -> None:
    with MockComfy(root=tmp_path / "root") as comfy, listening(comfy, "c") as ws:
        body = {"prompt": graph(n9_filename_prefix="../../x"), "client_id": "c"}
        messages = run(comfy, ws, body)[1]
        error = next(m["data"] for m in messages if m["type"] == "execution_error")
        assert "outside the output folder" in error["exception_message"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]


def test_view_serves_the_file_and_refuses_escapes(tmp_path: Path) -> None:
    (tmp_path / "secret.png").write_bytes(b"not for clients")
    with MockComfy(root=tmp_path / "root") as comfy, listening(comfy, "c") as ws:
        prompt_id, _ = run(comfy, ws, {"prompt": graph(), "client_id": "c"})
        image = images(comfy, prompt_id)[0]
        data = view(comfy, image).content
        assert (
            hashlib.sha256(data).digest()
            == hashlib.sha256(
                (comfy.output_dir / image["subfolder"] / image["filename"]).read_bytes()
            ).digest()
        )
        escapes = [
            {"filename": "secret.png", "subfolder": "../..", "type": "output"},
            {"filename": "../../secret.png", "type": "output"},
            {"filename": "secret.png", "subfolder": "/", "type": "output"},
        ]
        assert [view(comfy, e).status_code for e in escapes] == [403, 400, 403]


def test_one_bad_output_of_two_still_queues_with_node_errors() -> None:
    """comfyui-api.md C2: the valid output runs; the 200 lists the bad one's errors."""
    g = graph()
    g["20"] = {"class_type": "SaveImage", "inputs": {"images": ["21", 0], "filename_prefix": "b"}}
    g["21"] = {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}}
    g["21"]["inputs"].pop("vae")
    with MockComfy() as comfy, listening(comfy, "c") as ws:
        answer = post(comfy, {"prompt": g, "client_id": "c"}).json()
        assert list(answer["node_errors"]) == ["21"]
        assert answer["node_errors"]["21"]["dependent_outputs"] == ["20"]
        until_done(ws, answer["prompt_id"])
        assert list(history(comfy, answer["prompt_id"])["outputs"]) == ["9"]


# -- history, routes, log --------------------------------------------------------------------
def test_history_paging_clear_api_prefix_and_request_log() -> None:
    with MockComfy() as comfy, listening(comfy, "c") as ws:
        ids = [run(comfy, ws, {"prompt": graph(n3_seed=s), "client_id": "c"})[0] for s in (1, 2, 3)]
        last_two = requests.get(comfy.url + "/api/history?max_items=2", timeout=TIMEOUT).json()
        assert list(last_two) == ids[1:]
        page = requests.get(comfy.url + "/history?max_items=1&offset=0", timeout=TIMEOUT).json()
        assert list(page) == ids[:1]
        requests.post(comfy.url + "/api/history", json={"clear": True}, timeout=TIMEOUT)
        assert requests.get(comfy.url + "/history", timeout=TIMEOUT).json() == {}
        assert requests.get(comfy.url + "/nope", timeout=TIMEOUT).status_code == 404
        posts = [r for r in comfy.recorder.requests if (r.method, r.path) == ("POST", "/prompt")]
        assert [r.body["prompt"]["3"]["inputs"]["seed"] for r in posts] == [1, 2, 3]
        assert [r.status for r in comfy.recorder.requests if r.path == "/ws"] == [101]


def test_output_linking_to_a_missing_node_is_refused() -> None:
    """comfyui-api.md C2 `exception_during_validation`: the output node itself links to nothing
    (no consumer to report it, unlike the recorded inner case)."""
    g = {"9": {"class_type": "SaveImage", "inputs": {"images": ["99", 0], "filename_prefix": "x"}}}
    with MockComfy() as comfy:
        answer = post(comfy, {"prompt": g})
        assert answer.status_code == 400
        (error,) = answer.json()["node_errors"]["9"]["errors"]
        assert (error["type"], error["details"]) == ("exception_during_validation", "'99'")
        assert comfy.queue.remaining() == 0


def test_a_batch_too_big_for_the_device_fails_at_run_time() -> None:
    with MockComfy(catalog=Catalog(max_pixels=64 * 64)) as comfy, listening(comfy, "c") as ws:
        messages = run(comfy, ws, {"prompt": graph(), "client_id": "c"})[1]  # 2 x 64x64
        error = next(m["data"] for m in messages if m["type"] == "execution_error")
        assert (error["node_type"], error["exception_type"]) == (
            "EmptyLatentImage",
            "torch.OutOfMemoryError",
        )
        assert files(comfy) == []
