"""The stand-in ComfyUI's WebSocket routing held to the real 0.3.64 (tests/data/real-comfyui):
a prompt's events go only to its client_id (without one, only progress, to everyone); a second
socket with the same clientId takes over, and closing the first orphans the second."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests
from comfyhelp import REAL, TIMEOUT, listening, post, seeded, shape, types, until, until_done
from websockets.sync.client import ClientConnection, connect

from sdbatch.standin.comfyui import MockComfy


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
            body: dict[str, Any] = {"prompt": seeded(len(case))}
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
        prompt_id = post(comfy, {"prompt": seeded(5, 20), "client_id": "ex2"}).json()["prompt_id"]
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
        prompt_id = post(comfy, {"prompt": seeded(31), "client_id": "s"}).json()["prompt_id"]
        while not history_ready(comfy, prompt_id) and time.monotonic() < deadline:
            time.sleep(0.02)
        got = []
        with pytest.raises(TimeoutError):
            while True:
                got.append(json.loads(second.recv(timeout=0.3)))
    assert got == REAL["own/steal_then_first_closes"]["second_got"] == []


def history_ready(comfy: MockComfy, prompt_id: str) -> bool:
    return bool(requests.get(f"{comfy.url}/history/{prompt_id}", timeout=TIMEOUT).json())
