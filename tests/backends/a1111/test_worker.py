"""The worker against the stand-in webui over real loopback HTTP; faults injected in the server."""

from __future__ import annotations

import dataclasses
import io
import itertools
import socket
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import yaml
from PIL import Image

from sdbatch.backends.a1111.attempt import IDLE_POLL, TXT2IMG
from sdbatch.backends.a1111.oom import OOM_RETRIES, is_out_of_memory, split_batch
from sdbatch.backends.a1111.responses import decode
from sdbatch.backends.a1111.worker import Worker
from sdbatch.backends.base import GeneratedImage, Outcome
from sdbatch.backends.session import generation_headers
from sdbatch.backends.wait import wait_for_server
from sdbatch.errors import ServerUnreachableError
from sdbatch.job.loader import ServerConfig, load_job
from sdbatch.plan.expand import PlannedPayload
from sdbatch.standin.a1111 import LoggedRequest, MockWebui
from sdbatch.standin.a1111.catalog import TINY


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


# -- waiting for the server ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_wait_for_server_returns_once_the_webui_is_up() -> None:
    port = free_port()
    server = MockWebui(port=port)
    timer = threading.Timer(1.5, server.start)
    lines: list[str] = []
    started = time.monotonic()
    timer.start()
    try:
        wait_for_server(f"http://127.0.0.1:{port}", 20, log=lines.append)  # real sleeps
        waited = time.monotonic() - started
    finally:
        timer.join()
        server.stop()
    assert 1.4 < waited < 5
    assert lines[0] == f"waiting for the server at http://127.0.0.1:{port} (0 s so far)"


def test_any_http_answer_means_the_webui_is_up() -> None:
    sleeps: list[float] = []
    with MockWebui(auth=("user", "secret")) as server:  # /progress answers 401
        wait_for_server(server.url, 5, sleep=sleeps.append)
        assert [r.status for r in server.requests] == [401]
    assert sleeps == []


def test_wait_for_server_gives_up_and_logs_every_ten_seconds() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    now = [0.0]
    sleeps: list[float] = []
    lines: list[str] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    with pytest.raises(ServerUnreachableError) as err:
        wait_for_server(url, 25, sleep=sleep, clock=lambda: now[0], log=lines.append)
    assert str(err.value) == f"the server at {url} did not answer within 25 s"
    assert sleeps == [1.0] * 25  # a probe every second, the last one on the deadline
    assert lines == [f"waiting for the server at {url} ({s} s so far)" for s in (0, 10, 20)]


# -- timeouts ------------------------------------------------------------------------------


def txt2img_requests(webui: MockWebui, count: int = 0) -> list[LoggedRequest]:
    """The txt2img requests in arrival order, once `count` are logged: a timed-out request is
    logged when its job is done, which may be after its re-send has been answered."""
    deadline = time.monotonic() + 5
    while True:
        sent = [r for r in webui.requests if r.path == "/sdapi/v1/txt2img"]
        if len(sent) >= count or time.monotonic() > deadline:
            return sorted(sent, key=lambda r: r.time)
        time.sleep(0.01)


def test_a_timed_out_job_is_waited_for_and_the_gate_holds_back_the_other_thread(
    webui: MockWebui,
) -> None:
    webui.inject(slow_next=1, slow_seconds=1.3)  # generating outlasts the 1 s client timeout
    polling = threading.Event()
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        polling.set()
        time.sleep(0.05)  # real time must pass for the webui to finish

    worker = Worker(ServerConfig(url=webui.url, timeout=1.0, retries=3), sleep=sleep)
    other: list[Outcome] = []

    def submit_meanwhile() -> None:
        assert polling.wait(10)
        other.append(worker.submit(item(seed=200)))

    thread = threading.Thread(target=submit_meanwhile)
    thread.start()
    outcome = worker.submit(item())
    thread.join(10)
    assert outcome.ok and outcome.attempts == 2
    assert other[0].ok and other[0].attempts == 1
    assert IDLE_POLL in sleeps  # it polled while the webui was still busy
    assert [g.seed for g in webui.generated].count(100) == 2  # generated twice, no more
    first_end = webui.generated[0].time
    sent = txt2img_requests(webui, 3)
    assert len(sent) == 3 and sent[0].body["seed"] == 100
    assert all(r.time > first_end for r in sent[1:])  # the re-send and the other thread's


def test_waiting_for_a_timed_out_job_is_bounded(webui: MockWebui) -> None:
    webui.inject(slow_next=1, slow_seconds=0.9)
    ticks = itertools.count(step=100.0)  # the deadline has passed at the first look
    worker = Worker(
        ServerConfig(url=webui.url, timeout=0.6, retries=3),
        sleep=lambda s: None,
        monotonic=lambda: next(ticks),
    )
    outcome = worker.submit(item())
    assert outcome.ok and outcome.attempts == 2
    first_end = webui.generated[0].time
    assert txt2img_requests(webui, 2)[1].time < first_end  # sent again while still busy


# -- out of memory -------------------------------------------------------------------------

OOM = (
    "HTTP 500: OutOfMemoryError: CUDA out of memory. Tried to allocate 4.00 GiB. GPU 0 has a "
    "total capacity of 7.79 GiB of which 1.21 GiB is free. (sdbatch stand-in)"
)


def parts(outcome: Outcome) -> list[tuple[int, int, int, int]]:
    """(first_image, batch_size, n_iter, seed) of each response."""
    return [
        (r.first_image, r.payload["batch_size"], r.payload["n_iter"], r.payload["seed"])
        for r in outcome.responses
    ]


def test_out_of_memory_splits_the_batch_down_to_single_images(
    webui: MockWebui, caplog: pytest.LogCaptureFixture
) -> None:
    webui.inject(oom_above_batch=1)
    sleeps: list[float] = []
    outcome = make_worker(webui.url, sleeps).submit(item(batch_size=4))
    assert outcome.ok
    # 4 -> 2+2 -> (1+1)+(1+1): seven requests, and no backoff since each split is a new batch.
    assert outcome.attempts == 7 and sleeps == []
    assert [r.status for r in txt2img_requests(webui)] == [500, 500, 200, 200, 500, 200, 200]
    assert parts(outcome) == [(0, 1, 1, 100), (1, 1, 1, 101), (2, 1, 1, 102), (3, 1, 1, 103)]
    images = images_of(outcome)
    assert [(img.image_index, img.seed) for img in images] == [
        (0, 100),
        (1, 101),
        (2, 102),
        (3, 103),
    ]
    assert f"the webui ran out of GPU memory on payload 0 (batch_size 4): {OOM}" in caplog.text
    assert "(batch_size 2)" in caplog.text


def test_out_of_memory_splits_every_iteration(webui: MockWebui) -> None:
    webui.inject(oom_above_batch=1)
    outcome = make_worker(webui.url, []).submit(item(batch_size=2, n_iter=2))
    assert outcome.ok and outcome.attempts == 5
    assert parts(outcome) == [(0, 1, 1, 100), (1, 1, 1, 101), (2, 1, 1, 102), (3, 1, 1, 103)]
    assert [img.seed for img in images_of(outcome)] == [100, 101, 102, 103]


def test_odd_batches_split_into_ceil_and_floor(webui: MockWebui) -> None:
    webui.inject(oom_above_batch=2)
    outcome = make_worker(webui.url, []).submit(item(batch_size=3, n_iter=2))
    assert outcome.ok and outcome.attempts == 5
    assert parts(outcome) == [(0, 2, 1, 100), (2, 1, 1, 102), (3, 2, 1, 103), (5, 1, 1, 105)]
    images = images_of(outcome)
    assert [img.image_index for img in images] == [0, 1, 2, 3, 4, 5]
    assert [img.seed for img in images] == [100, 101, 102, 103, 104, 105]


def test_a_variation_seed_batch_keeps_its_seed_and_subseeds(webui: MockWebui) -> None:
    webui.inject(oom_above_batch=1)
    outcome = make_worker(webui.url, []).submit(item(batch_size=2, subseed=7, subseed_strength=0.5))
    assert outcome.ok
    assert [(g.seed, g.subseed) for g in webui.generated] == [(100, 7), (100, 8)]


def test_out_of_memory_on_one_image_is_retried_twice_then_fails(webui: MockWebui) -> None:
    webui.inject(oom_seeds=[100])
    sleeps: list[float] = []
    outcome = make_worker(webui.url, sleeps, retries=5).submit(item())
    assert not outcome.ok and outcome.responses == ()
    assert outcome.attempts == 1 + OOM_RETRIES == 3 and len(sleeps) == 2
    assert outcome.error == OOM


def test_once_one_image_alone_does_not_fit_the_rest_is_not_sent(webui: MockWebui) -> None:
    # Every part of a split needs at least one image's memory: after the first image fails on
    # its own (with its retries), sending the second would only fail the same way.
    webui.inject(oom_above_batch=1, oom_seeds=[100])
    outcome = make_worker(webui.url, []).submit(item(batch_size=2))
    assert outcome.attempts == 1 + 3  # the pair, then the first image 3 times
    assert parts(outcome) == [] and images_of(outcome) == []
    assert outcome.error == OOM  # the first image's own failure; the second was never sent


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        (500, "HTTP 500: OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", True),
        (500, "HTTP 500: OutOfMemoryError: ", True),  # A1111 sometimes has no words for it
        (500, "HTTP 500: RuntimeError: MPS backend out of memory (MPS allocated: 9 GB)", True),
        (500, "HTTP 500: NansException: A tensor with NaNs was produced in Unet", False),
        (422, "HTTP 422: prompt: out of memory is a fine prompt", False),
    ],
)
def test_what_counts_as_out_of_memory(status: int, message: str, expected: bool) -> None:
    assert is_out_of_memory(status, message) is expected


def test_split_batch_without_a_fixed_seed_leaves_it_random() -> None:
    halves = split_batch({"prompt": "x", "seed": -1, "batch_size": 5})
    assert [(p.first_image, p.payload["batch_size"], p.payload["seed"]) for p in halves] == [
        (0, 3, -1),
        (3, 2, -1),
    ]


# -- interrupt -----------------------------------------------------------------------------


def test_interrupt_cuts_a_slow_generation_short() -> None:
    with MockWebui(step_delay=0.2) as server:  # 20 steps: 4 s uninterrupted
        worker = make_worker(server.url, [])
        result: list[Outcome] = []
        thread = threading.Thread(target=lambda: result.append(worker.submit(item(steps=20))))
        started = time.monotonic()
        thread.start()
        deadline = started + 5
        while server.state.job_count == 0:  # wait until it generates
            assert time.monotonic() < deadline
            time.sleep(0.01)
        worker.interrupt()
        thread.join(5)
        assert time.monotonic() - started < 2
        assert result[0].ok  # an interrupted job still answers 200 with what it made
        assert [r.status for r in server.requests if r.path == "/sdapi/v1/interrupt"] == [200]


def test_interrupt_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    make_worker(f"http://127.0.0.1:{free_port()}", []).interrupt()
    assert "could not interrupt the webui" in caplog.text


@pytest.mark.parametrize(
    ("payload", "error", "hint"),
    [
        ({"steps": 0}, "ZeroDivisionError: integer division", "steps must be 1 or more"),
        ({"enable_hr": True}, "TypeError: '>' not supported", "enable_hr needs a denoising"),
        (
            {"enable_hr": True, "denoising_strength": 0.5, "hr_upscaler": "Nope"},
            "Exception: could not find upscaler named Nope",
            "hr_upscaler names an upscaler this webui does not have",
        ),
        ({"prompt": None}, "AssertionError", "the webui refused a value"),
        (
            {"override_settings": {"CLIP_stop_at_last_layers": 2, "no_such_option": 5}},
            "KeyError: 'no_such_option'",
            "override_settings names an option this webui does not have",
        ),
    ],
)
def test_a_500_that_fails_the_same_way_every_time_is_sent_once(
    webui: MockWebui, payload: dict[str, Any], error: str, hint: str
) -> None:
    sleeps: list[float] = []
    outcome = make_worker(webui.url, sleeps).submit(item(**payload))
    assert not outcome.ok and outcome.attempts == 1 and sleeps == []
    assert outcome.error is not None
    assert outcome.error.startswith(f"HTTP 500: {error}")
    assert f"({hint}" in outcome.error and "not retried" in outcome.error


def test_a_model_that_makes_nans_is_tried_once_more_then_given_up() -> None:
    with MockWebui(catalog=TINY) as server:
        sleeps: list[float] = []
        nan = {"sd_model_checkpoint": "tinyNaN"}
        outcome = make_worker(server.url, sleeps).submit(item(override_settings=nan))
    assert not outcome.ok and outcome.attempts == 2 and len(sleeps) == 1
    assert outcome.error is not None
    assert outcome.error.startswith("HTTP 500: NansException: A tensor with NaNs was produced")
    assert "the model produced NaNs" in outcome.error


def test_other_500s_keep_the_retry_budget(webui: MockWebui) -> None:
    webui.inject(fail_next=2, fail_status=500, fail_error="RuntimeError", fail_message="boom")
    outcome = make_worker(webui.url, []).submit(item())
    assert outcome.ok and outcome.attempts == 3


@pytest.mark.parametrize("gzip", [None, False, True])
def test_txt2img_asks_for_an_uncompressed_answer_unless_the_job_allows_gzip(
    tmp_path: Path, gzip: bool | None
) -> None:
    # Through a job file, so the schema and the loader are part of what is checked.
    server: dict[str, Any] = {"url": "http://127.0.0.1:7860"}
    if gzip is not None:
        server["gzip"] = gzip
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({"name": "t", "server": server, "prompts": ["a"], "seeds": [1]}))
    config = load_job(job).server
    assert config.gzip is bool(gzip)
    seen: list[tuple[str, str, str | None]] = []

    def note(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        # What went over the wire both ways: the request's header and the stand-in's answer.
        sent = str(response.request.headers.get("Accept-Encoding"))
        route = urlsplit(response.request.path_url).path
        seen.append((route, sent, response.headers.get("content-encoding")))

    with MockWebui() as webui:
        worker = Worker(dataclasses.replace(config, url=webui.url, retries=0))
        worker.session.hooks["response"].append(note)
        outcome = worker.submit(item())
        worker.busy()  # a /progress GET through the same session
    assert outcome.ok and [img.seed for img in images_of(outcome)] == [100]
    (route, sent, answered), (poll, polled, poll_answered) = seen
    assert route == TXT2IMG and poll == "/sdapi/v1/progress"
    if gzip:
        assert "gzip" in sent and answered == "gzip"
    else:
        assert (sent, answered) == ("identity", None)
    assert "gzip" in polled  # only generations ask for identity
    assert poll_answered is None  # under GZipMiddleware's 1000 bytes, as the webui's


@pytest.mark.parametrize(
    ("server", "expected"),
    [
        ({}, {"Accept-Encoding": "identity"}),
        ({"gzip": True}, {}),
        # The job's own header is an explicit choice: the session sends it on every request.
        ({"headers": {"accept-encoding": "br"}}, {}),
    ],
)
def test_generation_headers(server: dict[str, Any], expected: dict[str, str]) -> None:
    assert generation_headers(ServerConfig(**server)) == expected
