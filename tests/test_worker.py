"""The worker against the stand-in webui over real loopback HTTP; faults injected in the server."""

from __future__ import annotations

import io
import socket
from typing import Any

import pytest
from PIL import Image

from sdbatch.errors import ServerUnreachableError
from sdbatch.loader import ServerConfig
from sdbatch.mockwebui import MockWebui
from sdbatch.plan import PlannedPayload
from sdbatch.worker import GeneratedImage, Outcome, Worker, decode


def item(**payload: Any) -> PlannedPayload:
    body = {"prompt": "a cat", "seed": 100, "steps": 4, "width": 64, "height": 48, **payload}
    return PlannedPayload(index=0, first_image=0, prompt_index=0, cell={}, payload=body)


def images_of(outcome: Outcome) -> list[GeneratedImage]:
    return [image for response in outcome.responses for image in decode(response)]


def make_worker(url: str, sleeps: list[float], **server: Any) -> Worker:
    config = ServerConfig(url=url, **{"timeout": 10.0, "retries": 3, **server})
    return Worker(config, sleep=sleeps.append)


def test_one_image(webui: MockWebui) -> None:
    sleeps: list[float] = []
    outcome = make_worker(webui.url, sleeps).submit(item())
    assert outcome.ok and outcome.attempts == 1 and sleeps == []
    images = images_of(outcome)
    assert [img.seed for img in images] == [100]
    with Image.open(io.BytesIO(images[0].data)) as img:
        assert img.format == "PNG" and img.size == (64, 48)
        assert "Seed: 100" in img.info["parameters"]
    assert webui.requests[-1].body == dict(item().payload)


def test_grid_image_is_skipped_and_each_image_has_its_seed(webui: MockWebui) -> None:
    outcome = make_worker(webui.url, []).submit(item(batch_size=2, n_iter=2, save_images=True))
    images = images_of(outcome)
    assert images[0].info["index_of_first_image"] == 1
    assert [img.seed for img in images] == [100, 101, 102, 103]
    for img in images:
        with Image.open(io.BytesIO(img.data)) as pic:
            assert pic.size == (64, 48)  # the grid would be larger


def test_500s_are_retried_with_backoff(webui: MockWebui) -> None:
    webui.inject(
        fail_next=2,
        fail_status=500,
        fail_error="OutOfMemoryError",
        fail_message="CUDA out of memory. Tried to allocate 2.00 GiB",
    )
    sleeps: list[float] = []
    outcome = make_worker(webui.url, sleeps).submit(item())
    assert outcome.ok and outcome.attempts == 3
    assert len(sleeps) == 2 and all(s > 0 for s in sleeps)
    assert webui.txt2img_count == 1


def test_gives_up_with_the_webuis_message(webui: MockWebui) -> None:
    webui.inject(
        fail_next=10,
        fail_status=500,
        fail_error="OutOfMemoryError",
        fail_message="CUDA out of memory. Tried to allocate 2.00 GiB",
    )
    outcome = make_worker(webui.url, [], retries=2).submit(item())
    assert not outcome.ok and outcome.attempts == 3
    assert (
        outcome.error
        == "HTTP 500: OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
    )


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_errors_are_retried(webui: MockWebui, status: int) -> None:
    webui.inject(fail_next=1, fail_status=status)
    outcome = make_worker(webui.url, []).submit(item())
    assert outcome.ok and outcome.attempts == 2


def test_422_is_tried_once(webui: MockWebui) -> None:
    sleeps: list[float] = []
    outcome = make_worker(webui.url, sleeps).submit(item(steps="many", width="wide"))
    assert not outcome.ok and outcome.attempts == 1 and sleeps == []
    assert outcome.error is not None
    assert "steps: value is not a valid integer" in outcome.error
    assert "width: value is not a valid integer" in outcome.error
    assert len([r for r in webui.requests if r.path == "/sdapi/v1/txt2img"]) == 1


def test_connection_resets_are_retried_and_nothing_is_generated_twice(webui: MockWebui) -> None:
    webui.inject(reset_next=2)
    outcome = make_worker(webui.url, []).submit(item())
    assert outcome.ok and outcome.attempts == 3
    assert len(webui.generated) == 1


def test_a_hung_request_times_out_and_is_retried(webui: MockWebui) -> None:
    webui.inject(hang_next=1, hang_seconds=5.0)
    outcome = make_worker(webui.url, [], timeout=0.5).submit(item())
    assert outcome.ok and outcome.attempts == 2


def test_unreachable_server_stops_the_run() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sleeps: list[float] = []
    with pytest.raises(ServerUnreachableError, match="cannot reach"):
        make_worker(f"http://127.0.0.1:{port}", sleeps, retries=2).submit(item())
    assert len(sleeps) == 2
