"""The stand-in ComfyUI held to what the real 0.3.64 did over several requests
(tests/data/real-comfyui): a runtime error, interrupts with the queue cleared behind them,
`front`, a client-chosen prompt_id used twice, POST /free's delayed effect, and the WebSocket
routing rules (only the posting client; a second socket with the same clientId takes over;
closing the first one orphans the second)."""

from __future__ import annotations

import json
import time
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
    shape,
    types,
    until_done,
)
from websockets.sync.client import ClientConnection, connect

from sdbatch.standin.comfyui import Catalog, MockComfy

OWN_GRAPH: dict[str, Any] = request_of("own/fresh_post")["json"]["prompt"]


def graph(seed: int, steps: int = 1) -> dict[str, Any]:
    """This session's recorded graph with another seed and step count."""
    g = json.loads(json.dumps(OWN_GRAPH))
    g["3"]["inputs"].update(seed=seed, steps=steps)
    return g


def until(ws: ClientConnection, kind: str) -> list[Any]:
    found = []
    while True:
        msg = json.loads(ws.recv(timeout=TIMEOUT))
        found.append(msg)
        if msg["type"] == kind:
            return found


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
        run(comfy, ws, {"prompt": graph(20), "client_id": "rec"})  # loader and texts cached
        long_id = post(comfy, {"prompt": graph(21, 40), "client_id": "rec"}).json()["prompt_id"]
        seen = until(ws, "executing")
        for seed in (22, 23):
            assert post(comfy, {"prompt": graph(seed), "client_id": "rec"}).status_code == 200
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
        first = post(comfy, {**chosen, "prompt": graph(1234, 2), "client_id": "ex2"}).json()
        assert first["prompt_id"] == chosen["prompt_id"]
        until_done(ws, chosen["prompt_id"])
        again = post(comfy, {**chosen, "prompt": graph(1235, 20), "client_id": "ex2"}).json()
        assert (again["prompt_id"], again["number"]) == (chosen["prompt_id"], first["number"] + 1)
        numbers = []
        for name, seed in (("front_A", 2001), ("front_B", 2002), ("front_C_front", 2003)):
            recorded = request_of(f"captured/round2/{name}")["json"]
            body = {**recorded, "prompt": graph(seed), "client_id": "ex2"}
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


def test_events_go_only_to_the_posting_client_as_recorded() -> None:
    """Two sockets: a prompt with A's client_id reports to A only (B gets the status broadcasts);
    a prompt without client_id reports progress to everyone and nothing else."""
    recorded = REAL["captured/ws_routing_two_clients"]
    with (
        MockComfy(step_delay=0.01) as comfy,
        listening(comfy, "A") as a,
        listening(comfy, "B") as b,
    ):
        for case, client in (
            ("prompt_with_client_id_clientA", "A"),
            ("prompt_without_client_id", None),
        ):
            body: dict[str, Any] = {"prompt": graph(len(case))}
            if client:
                body["client_id"] = client
            prompt_id = post(comfy, body).json()["prompt_id"]
            # With a client, its last message follows the final status.
            got = {"A": until_done(a, prompt_id) if client else _until_idle(a), "B": _until_idle(b)}
            for who in ("A", "B"):
                want = set(recorded[case][who]) - {"BINARY"}  # previews are off by default
                assert set(types(got[who])) == want, (case, who)


def _until_idle(ws: ClientConnection) -> list[Any]:
    """Messages up to the status that shows the queue empty again."""
    found = []
    while True:
        msg = json.loads(ws.recv(timeout=TIMEOUT))
        found.append(msg)
        idle = (
            msg["type"] == "status" and msg["data"]["status"]["exec_info"]["queue_remaining"] == 0
        )
        if idle and len(found) > 1:
            return found


def test_second_socket_takes_over_as_recorded() -> None:
    """A second socket with the same clientId gets `status` (with the sid) and the node running
    now, then every event; the first gets nothing more."""
    with MockComfy(step_delay=0.05) as comfy, listening(comfy, "ex2") as first:
        prompt_id = post(comfy, {"prompt": graph(5, 20), "client_id": "ex2"}).json()["prompt_id"]
        until(first, "progress")
        with connect(comfy.ws_url("ex2")) as second:
            hello = [json.loads(second.recv(timeout=TIMEOUT)) for _ in range(2)]
            want = REAL["captured/round2/reconnect_first_msgs"]
            assert shape(hello) == shape(want)
            assert hello[1] == {"type": "executing", "data": {"node": "3"}}
            rest = until_done(second, prompt_id)
            assert "execution_success" in types(rest)
            leftovers = []
            with pytest.raises(TimeoutError):
                while True:  # what the first had before the takeover, then nothing
                    leftovers.append(json.loads(first.recv(timeout=0.3)))
            assert "execution_success" not in types(leftovers)


def test_closing_the_first_socket_orphans_the_second_as_recorded() -> None:
    """Recorded on the real server: once the first socket with an id closes, the id is dropped,
    and the second socket, which had taken over, gets nothing for that client."""
    with (
        MockComfy() as comfy,
        connect(comfy.ws_url("s")) as first,
        connect(comfy.ws_url("s")) as second,
    ):
        first.recv(timeout=TIMEOUT)
        second.recv(timeout=TIMEOUT)
        first.close()
        deadline = time.monotonic() + TIMEOUT
        while "s" in comfy.hub.client_ids() and time.monotonic() < deadline:
            time.sleep(0.01)
        prompt_id = post(comfy, {"prompt": graph(31), "client_id": "s"}).json()["prompt_id"]
        while not history_ready(comfy, prompt_id) and time.monotonic() < deadline:
            time.sleep(0.02)
        got = []
        with pytest.raises(TimeoutError):
            while True:
                got.append(json.loads(second.recv(timeout=0.3)))
    assert got == REAL["own/steal_then_first_closes"]["second_got"] == []


def history_ready(comfy: MockComfy, prompt_id: str) -> bool:
    return bool(requests.get(f"{comfy.url}/history/{prompt_id}", timeout=TIMEOUT).json())
