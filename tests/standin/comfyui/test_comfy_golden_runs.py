"""The stand-in ComfyUI held to what the real 0.3.64 did over several requests
(tests/data/real-comfyui): a runtime error, interrupts with the queue cleared behind them,
`front`, a client-chosen prompt_id used twice, and POST /free's delayed effect (the socket
routing rules: test_comfy_golden_ws.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from comfyhelp import (
    REAL,
    ROUND2_CATALOG,
    TIMEOUT,
    history,
    listening,
    neutral,
    post,
    request_of,
    run,
    seeded,
    shape,
    types,
    until,
    until_done,
)

from sdbatch.standin.comfyui import Catalog, MockComfy


def without_steps(messages: list[Any]) -> list[tuple[str, Any]]:
    """Types, with each status's queue_remaining, leaving out the per-step messages (how many
    steps ran before an interrupt is a matter of timing)."""
    return [
        (m["type"], m["data"].get("status", {}).get("exec_info", {}).get("queue_remaining"))
        for m in messages
        if m["type"] not in ("progress", "progress_state")
    ]


def test_runtime_error_as_recorded() -> None:
    """A garbage checkpoint passes validation (200) and fails when loaded: execution_error with
    safetensors' message on the socket, history status error, nothing saved."""
    with MockComfy(catalog=ROUND2_CATALOG) as comfy, listening(comfy, "ex2") as ws:
        body = {**request_of("captured/round2/runtime_error_post")["json"], "client_id": "ex2"}
        prompt_id, messages = run(comfy, ws, body)
        want = REAL["captured/round2/runtime_error_ws"]  # the capture stops at the error
        assert neutral(messages[: len(want)]) == neutral(want)
        assert types(messages[len(want) :]) == ["status", "executing"]
        got = history(comfy, prompt_id)
        (real,) = REAL["captured/round2/runtime_error_history"].values()
        assert neutral(got["status"]) == neutral(real["status"])
        assert (got["outputs"], got["meta"]) == (real["outputs"], real["meta"]) == ({}, {})
        assert comfy.recorder.executions[0].files == ()


def test_global_interrupt_and_queue_clear_as_recorded() -> None:
    """A 40-step prompt, two queued behind it, /queue clear (pending only), then POST /interrupt
    without a body: the messages and statuses in the real order, history `error` with empty
    outputs, and /history delete."""
    with MockComfy(step_delay=0.05) as comfy, listening(comfy, "rec") as ws:
        run(comfy, ws, {"prompt": seeded(20), "client_id": "rec"})  # loader and texts cached
        long_id = post(comfy, {"prompt": seeded(21, 40), "client_id": "rec"}).json()["prompt_id"]
        seen = until(ws, "executing")
        for seed in (22, 23):
            assert post(comfy, {"prompt": seeded(seed), "client_id": "rec"}).status_code == 200
        busy = requests.get(comfy.url + "/queue", timeout=TIMEOUT).json()
        assert shape(busy) == shape(REAL["own/queue_busy"]["body"])
        assert [len(busy["queue_running"]), len(busy["queue_pending"])] == [1, 2]
        cleared = requests.post(comfy.url + "/queue", json={"clear": True}, timeout=TIMEOUT)
        assert (cleared.status_code, cleared.content) == (200, b"")
        after = requests.get(comfy.url + "/queue", timeout=TIMEOUT).json()
        assert neutral(after) == neutral(REAL["own/queue_after_clear"]["body"]) | {
            "queue_running": neutral(after["queue_running"])
        }
        assert after["queue_pending"] == []
        seen += until(ws, "progress")
        answer = requests.post(comfy.url + "/interrupt", timeout=TIMEOUT)
        assert (answer.status_code, answer.content) == (200, b"")
        seen += until_done(ws, long_id)
        assert without_steps(seen) == without_steps(REAL["own/interrupt_ws"])
        got = history(comfy, long_id)
        (real,) = REAL["own/interrupt_history"]["body"].values()
        assert neutral(got)["status"] == neutral(real)["status"]
        assert (got["outputs"], got["meta"]) == ({}, {})
        gone = requests.post(comfy.url + "/history", json={"delete": [long_id]}, timeout=TIMEOUT)
        assert (gone.status_code, gone.content) == (200, b"")
        assert requests.get(f"{comfy.url}/history/{long_id}", timeout=TIMEOUT).json() == {}


def test_interrupt_for_the_running_prompt_as_recorded() -> None:
    """POST /interrupt {"prompt_id": running}: it lands at the next sampler step; an interrupt
    naming another prompt is ignored."""
    with (
        MockComfy(
            step_delay=0.05, catalog=Catalog(checkpoints=("tiny_sd15_random.safetensors",))
        ) as comfy,
        listening(comfy, "ex") as ws,
    ):
        body = {**request_of("captured/interrupt_post")["json"], "client_id": "ex"}
        warm = json.loads(json.dumps(body))
        warm["prompt"]["3"]["inputs"].update(seed=1, steps=1)
        run(comfy, ws, warm)  # loader and texts cached, as on the real server then
        prompt_id = post(comfy, body).json()["prompt_id"]
        seen = until(ws, "progress")
        requests.post(comfy.url + "/interrupt", json={"prompt_id": "not-running"}, timeout=TIMEOUT)
        seen += until(ws, "progress")  # still sampling
        requests.post(comfy.url + "/interrupt", json={"prompt_id": prompt_id}, timeout=TIMEOUT)
        seen += until_done(ws, prompt_id)
    want = REAL["captured/ws/interrupt"]
    assert without_steps(seen) == without_steps(want)
    stopped = next(m for m in seen if m["type"] == "execution_interrupted")
    real = next(m for m in want if m["type"] == "execution_interrupted")
    assert neutral(stopped) == neutral(real)


def test_front_and_client_prompt_ids_as_recorded() -> None:
    """`front` queues with a negative number and /queue shows the heap array; a client-chosen
    prompt_id is echoed, and may be used again (it runs again)."""
    with MockComfy(step_delay=0.05) as comfy, listening(comfy, "ex2") as ws:
        chosen = request_of("captured/round2/client_prompt_id_post")["json"]
        first = post(comfy, {**chosen, "prompt": seeded(1234, 2), "client_id": "ex2"}).json()
        assert first["prompt_id"] == chosen["prompt_id"]
        until_done(ws, chosen["prompt_id"])
        again = post(comfy, {**chosen, "prompt": seeded(1235, 20), "client_id": "ex2"}).json()
        assert (again["prompt_id"], again["number"]) == (chosen["prompt_id"], first["number"] + 1)
        numbers = []
        for name, seed in (("front_A", 2001), ("front_B", 2002), ("front_C_front", 2003)):
            recorded = request_of(f"captured/round2/{name}")["json"]
            body = {**recorded, "prompt": seeded(seed), "client_id": "ex2"}
            numbers.append(post(comfy, body).json()["number"])
        real = [
            REAL[f"captured/round2/{n}"]["body"]["number"]
            for n in ("front_A", "front_B", "front_C_front")
        ]
        assert [n - numbers[0] for n in numbers[:2]] == [n - real[0] for n in real[:2]]
        assert numbers[2] == -(numbers[0] + 2) and real[2] == -(real[0] + 2)
        pending = requests.get(comfy.url + "/queue", timeout=TIMEOUT).json()["queue_pending"]
        recorded_pending = REAL["captured/round2/front_queue"]["queue_pending"]
        seeds = [i[2]["3"]["inputs"]["seed"] for i in pending]
        assert seeds == [i[2]["3"]["inputs"]["seed"] for i in recorded_pending]
        requests.post(comfy.url + "/queue", json={"clear": True}, timeout=TIMEOUT)
        requests.post(comfy.url + "/interrupt", timeout=TIMEOUT)
        until_done(ws, chosen["prompt_id"])  # the reused id ran as well


def test_free_takes_effect_after_the_next_prompt_as_recorded() -> None:
    """POST /free {"free_memory": true} right before a prompt leaves that prompt's unchanged
    nodes cached (the real worker reads the flags after the prompt it runs next)."""
    catalog = Catalog(checkpoints=("tiny_sd15_random.safetensors",))
    with MockComfy(catalog=catalog) as comfy, listening(comfy, "ex") as ws:
        before = request_of("captured/timing_after_free_post")["json"]
        warm = json.loads(json.dumps(before["prompt"]))
        warm["6"]["inputs"]["text"] = "a photo of a cat"  # the prompt run before the /free
        run(comfy, ws, {"prompt": warm, "client_id": "ex"})
        free = REAL["captured/free_unload"]
        answer = requests.post(comfy.url + "/free", json=free["request"]["json"], timeout=TIMEOUT)
        assert (answer.status_code, answer.text) == (free["status"], free["body"])
        _, messages = run(comfy, ws, {**before, "client_id": "ex"})
    cached = next(m for m in messages if m["type"] == "execution_cached")
    real = next(m for m in REAL["captured/timing_after_free_ws"] if m["type"] == "execution_cached")
    assert cached["data"]["nodes"] == real["data"]["nodes"] == ["4", "5", "7"]


@pytest.mark.parametrize("name", ["own/invalid_missing_image", "own/one_bad_output_post"])
def test_partly_valid_prompt_is_queued_as_recorded(name: str) -> None:
    """A graph with one valid output and one invalid is queued (200) with the invalid one's
    `node_errors`, and runs only the valid output."""
    recorded = REAL[name]
    with MockComfy() as comfy, listening(comfy, "c") as ws:
        answer = post(comfy, {**recorded["request"]["json"], "client_id": "c"})
        assert (answer.status_code, answer.headers["content-type"]) == (
            recorded["status"],
            recorded["content_type"],
        )
        body = answer.json()
        assert list(body) == list(recorded["body"])
        assert body["node_errors"] == recorded["body"]["node_errors"]
        until_done(ws, body["prompt_id"])
        assert history(comfy, body["prompt_id"])["prompt"][4] == ["9"]


def test_converted_values_are_what_the_graph_keeps_as_recorded() -> None:
    """`"steps": "1"` passes as INT and history (and so the PNG's `prompt`) holds `1`."""
    with MockComfy() as comfy, listening(comfy, "c") as ws:
        body = {**request_of("own/steps_as_string_post")["json"], "client_id": "c"}
        assert body["prompt"]["3"]["inputs"]["steps"] == "1"
        prompt_id, _ = run(comfy, ws, body)
        (real,) = REAL["own/steps_as_string_history"]["body"].values()
        assert history(comfy, prompt_id)["prompt"][2] == real["prompt"][2]
        assert real["prompt"][2]["3"]["inputs"]["steps"] == 1
