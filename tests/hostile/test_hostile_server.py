"""Broken or hostile servers: every answer is checked before it is trusted, else a failed row
(or a clear exit 3) with the reason; never a traceback, never a hang, never unbounded memory.

Faults are injected in the stand-in (`tamper`, `route_answers`, `fail_*`), or, where they lie
below HTTP (a server that trickles its answer), in a raw socket server in this module. Organised
by class of hostile answer; each case checks the message, the exit code, that no traceback
escaped, that it ended in bounded time, that nothing was written outside the output dir and
that no bad image was recorded `ok` (every `ok` file is decoded here, independently).
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import RunCli
from conftest import manifest_rows as rows
from hostile_cli import bounded, run
from PIL import Image

from sdbatch.backends.a1111.attempt import TXT2IMG
from sdbatch.backends.a1111.backoff import RETRY_AFTER_MAX
from sdbatch.backends.a1111.oom import OOM_RETRIES
from sdbatch.backends.a1111.worker import Worker
from sdbatch.job.loader import ServerConfig
from sdbatch.plan.expand import PlannedPayload
from sdbatch.standin.a1111 import MockWebui

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bin"}
PAGE = "<html><head><title>Sign in</title></head><body>" + "secret page text " * 500 + "</body>"


# -- helpers ----------------------------------------------------------------------------------
def write_job(tmp_path: Path, url: str, *, seeds: int = 1, batch: int = 2, **server: Any) -> Path:
    job = {
        "name": "hostile",
        "server": {"url": url, "timeout": 10, "retries": 1, **server},
        "defaults": {"steps": 2, "width": 64, "height": 64, "batch_size": batch},
        "prompts": ["a cat"],
        "seeds": list(range(1, seeds + 1)),
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def recorded_text(tmp_path: Path) -> str:
    """Every file sdbatch wrote under `tmp_path`, as text."""
    return "\n".join(
        p.read_bytes().decode("utf-8", "replace")
        for p in sorted(tmp_path.rglob("*"))
        if p.is_file() and p.suffix not in IMAGE_SUFFIXES
    )


def check_output(tmp_path: Path) -> list[dict[str, Any]]:
    """Nothing outside tmp_path/out but the job; every `ok` image decodes in full; no image
    file that no `ok` row names. Returns the manifest rows."""
    out = tmp_path / "out"
    assert {p.name for p in tmp_path.iterdir()} <= {"job.yaml", "out", "sdbatch.log"}
    found = rows(out)
    good = {r["file"] for r in found if r["status"] in ("ok", "mismatch")}
    for name in good:
        with Image.open(out / name) as img:
            img.load()  # raises on a truncated or broken file
    images = {
        p.relative_to(out).as_posix()
        for p in out.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    }
    assert images <= good, f"stray files: {images - good}"
    return found


def txt2img_count(webui: MockWebui) -> int:
    return sum(1 for r in webui.requests if r.path == TXT2IMG)


def item(**payload: Any) -> PlannedPayload:
    body = {"prompt": "a cat", "seed": 100, "steps": 2, "width": 64, "height": 64, **payload}
    return PlannedPayload(index=0, first_image=0, prompt_index=0, cell={}, payload=body)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- answers that must not be recorded as good ------------------------------------------------
BAD_ANSWERS = [
    ("truncate_png", "image 0 does not decode"),
    ("not_an_image", "image 0 is not a picture"),
    ("bomb_png", "pixels"),
    ("no_images", "no `images` list"),
    ("null_images", "no `images` list"),
    ("empty_images", "sent 0 of the 2 images asked for (image(s) 0, 1 missing)"),
    ("short_images", "sent 1 of the 2 images asked for (image(s) 1 missing)"),
    ("info_garbage", "`info` is not JSON"),
    ("seeds_garbage", "`info.all_seeds` is"),
    ("index_garbage", "`info.index_of_first_image` is"),
    ("html", "the answer is not JSON: an HTML page ('502 Bad Gateway')"),
    ("text", "the answer is not JSON: OK ..."),
]


class TestAnswersRecordedAsGood:
    @pytest.mark.parametrize(("tamper", "reason"), BAD_ANSWERS, ids=[t for t, _ in BAD_ANSWERS])
    def test_a_bad_answer_is_a_failed_row_with_its_reason(
        self, tamper: str, reason: str, webui: MockWebui, run_cli: RunCli, tmp_path: Path
    ) -> None:
        webui.inject(tamper=tamper, tamper_next=1)
        result = run(run_cli, write_job(tmp_path, webui.url), 1)
        found = check_output(tmp_path)
        assert [r["status"] for r in found] == ["failed"]
        assert reason in found[0]["error"] and reason in result.err
        # An HTML page is summarised by its title, never shown.
        assert "could not reach the upstream" not in result.err + recorded_text(tmp_path)

    def test_the_rerun_makes_what_a_bad_answer_spoiled(
        self, webui: MockWebui, run_cli: RunCli, tmp_path: Path
    ) -> None:
        webui.inject(tamper="truncate_png", tamper_next=1)
        job = write_job(tmp_path, webui.url)
        run(run_cli, job, 1)
        run(run_cli, job, 0)
        assert [r["status"] for r in check_output(tmp_path)] == ["failed", "ok", "ok"]

    def test_the_pixel_limit_is_a_setting(
        self,
        webui: MockWebui,
        run_cli: RunCli,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setenv("SDBATCH_MAX_IMAGE_PIXELS", "1000")
        result = run(run_cli, write_job(tmp_path, webui.url), 1)
        assert "image 0 claims 64x64 pixels, more than the limit of 1000" in result.err
        assert [r["status"] for r in check_output(tmp_path)] == ["failed"]

    def test_the_job_files_limit_wins_over_the_environment(
        self,
        webui: MockWebui,
        run_cli: RunCli,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setenv("SDBATCH_MAX_IMAGE_PIXELS", "100000000")
        job = write_job(tmp_path, webui.url, batch=1, max_image_pixels=2000)
        result = run(run_cli, job, 1)
        assert "image 0 claims 64x64 pixels, more than the limit of 2000" in result.err
        assert [r["status"] for r in check_output(tmp_path)] == ["failed"]

    def test_a_limit_that_is_no_number_is_refused_before_sending(
        self,
        webui: MockWebui,
        run_cli: RunCli,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setenv("SDBATCH_MAX_RESPONSE_BYTES", "lots")
        result = run(run_cli, write_job(tmp_path, webui.url), 2)
        assert "SDBATCH_MAX_RESPONSE_BYTES must be a whole number" in result.err
        assert webui.requests == []


# -- answers broken on the wire ---------------------------------------------------------------
class DripServer:
    """Answers every request with headers promising 100 kB, then one byte every 0.1 s; or,
    `in_headers`, trickles a header line itself a byte every 0.1 s."""

    def __init__(self, *, in_headers: bool = False) -> None:
        self.in_headers = in_headers
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                if self.in_headers:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                else:
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        b"Content-Length: 100000\r\n\r\n["
                    )
                while not self.stop.wait(0.1):
                    conn.sendall(b"x" if self.in_headers else b" ")
            except OSError:
                return

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture(params=[False, True], ids=["body", "headers"])
def drip(request: pytest.FixtureRequest) -> Iterator[DripServer]:
    server = DripServer(in_headers=request.param)
    yield server
    server.close()


class TestTransport:
    def test_a_gzip_bomb_is_cut_at_the_size_limit(
        self,
        webui: MockWebui,
        run_cli: RunCli,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setenv("SDBATCH_MAX_RESPONSE_BYTES", str(8 * 1024 * 1024))
        webui.inject(tamper="gzip_bomb", tamper_next=5)
        tracemalloc.start()
        try:
            # sdbatch asks for no gzip (Accept-Encoding: identity); the server gzips anyway.
            result = run(run_cli, write_job(tmp_path, webui.url), 1)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert f"the answer is larger than {8 * 1024 * 1024} bytes" in result.err
        assert [r["status"] for r in check_output(tmp_path)] == ["failed"]
        assert peak < 40 * 1024 * 1024  # the bomb inflates to 64 MB; the limit is 8 MB
        assert txt2img_count(webui) == 1  # the same size on every attempt: not retried

    def test_a_body_cut_short_is_retried_and_the_run_goes_on(
        self, webui: MockWebui, run_cli: RunCli, tmp_path: Path
    ) -> None:
        webui.inject(tamper="cut", tamper_next=1)
        run(run_cli, write_job(tmp_path, webui.url, seeds=2, batch=1), 0)
        assert [r["status"] for r in check_output(tmp_path)] == ["ok", "ok"]
        assert txt2img_count(webui) == 3

    def test_bodies_cut_on_every_attempt_fail_each_payload_and_nothing_more(
        self, webui: MockWebui, run_cli: RunCli, tmp_path: Path
    ) -> None:
        webui.inject(tamper="cut", tamper_next=100)
        result = run(run_cli, write_job(tmp_path, webui.url, seeds=2, batch=1), 1)
        found = check_output(tmp_path)
        assert [r["status"] for r in found] == ["failed", "failed"]
        assert all("the answer was cut off after" in r["error"] for r in found)
        assert "2 payload(s) failed" in result.err

    def test_a_slow_drip_in_preflight_ends_at_the_timeout(
        self, drip: DripServer, run_cli: RunCli, tmp_path: Path
    ) -> None:
        result = run(run_cli, write_job(tmp_path, drip.url, timeout=1), 3)
        assert "the answer did not arrive in full within 1 s" in result.err
        assert not (tmp_path / "out").exists()

    def test_a_slow_drip_of_an_image_ends_at_the_timeout(
        self, drip: DripServer, run_cli: RunCli, tmp_path: Path
    ) -> None:
        job = write_job(tmp_path, drip.url, timeout=1, retries=0)
        result = run(run_cli, job, 1, "--no-preflight")
        found = check_output(tmp_path)
        assert [r["status"] for r in found] == ["failed"]
        assert "the answer did not arrive in full within 1 s" in found[0]["error"]
        assert "did not arrive in full" in result.err

    def test_a_429_is_retried_after_its_retry_after(self, webui: MockWebui) -> None:
        webui.inject(tamper="rate_limit", tamper_next=1, retry_after=7)
        sleeps: list[float] = []
        worker = Worker(ServerConfig(url=webui.url, timeout=10, retries=3), sleep=sleeps.append)
        outcome = worker.submit(item())
        assert outcome.ok and outcome.attempts == 2
        assert sleeps == [7.0]

    def test_a_retry_after_is_capped(self, webui: MockWebui) -> None:
        webui.inject(tamper="rate_limit", tamper_next=1, retry_after=10**9)
        sleeps: list[float] = []
        worker = Worker(ServerConfig(url=webui.url, timeout=10, retries=3), sleep=sleeps.append)
        assert worker.submit(item()).ok
        assert sleeps == [RETRY_AFTER_MAX]

    @pytest.mark.parametrize(
        ("faults", "words"),
        [
            ({"tamper": "no_api", "tamper_next": 9}, "was it started with --api?"),
            ({"fail_next": 9, "fail_status": 501, "fail_message": "no"}, "HTTP 501"),
        ],
        ids=["404", "501"],
    )
    def test_404_and_501_are_not_retried(
        self, faults: dict[str, Any], words: str, webui: MockWebui
    ) -> None:
        webui.inject(**faults)
        sleeps: list[float] = []
        worker = Worker(ServerConfig(url=webui.url, timeout=10, retries=3), sleep=sleeps.append)
        outcome = worker.submit(item())
        assert outcome.attempts == 1 and sleeps == [] and txt2img_count(webui) == 1
        assert outcome.error is not None and words in outcome.error


# -- preflight answers of the wrong kind ------------------------------------------------------
PREFLIGHT = [
    (
        "/sdapi/v1/options",
        [200, "text/html", PAGE],
        "GET /sdapi/v1/options: the answer is not JSON",
    ),
    (
        "/sdapi/v1/options",
        [500, "text/html", PAGE],
        "GET /sdapi/v1/options: HTTP 500: an HTML page",
    ),
    ("/sdapi/v1/options", [200, "application/json", "[1]"], "GET /sdapi/v1/options: the answer"),
    ("/sdapi/v1/samplers", [200, "application/json", '{"a": 1}'], "GET /sdapi/v1/samplers: the"),
    ("/sdapi/v1/schedulers", [200, "application/json", '[{"name": "x"}]'], "/schedulers: the"),
    ("/sdapi/v1/sd-models", [200, "application/json", "[1, 2]"], "GET /sdapi/v1/sd-models: the"),
    ("/sdapi/v1/upscalers", [200, "application/json", '"none"'], "GET /sdapi/v1/upscalers: the"),
    ("/sdapi/v1/samplers", [404, "application/json", '{"detail":"Not Found"}'], "with --api?"),
]


class TestPreflightAnswers:
    @pytest.mark.parametrize(
        ("path", "answer", "words"), PREFLIGHT, ids=[f"{p[0][10:]}-{p[1][0]}" for p in PREFLIGHT]
    )
    def test_a_malformed_list_is_a_clear_exit_3_naming_the_endpoint(
        self,
        path: str,
        answer: list[Any],
        words: str,
        webui: MockWebui,
        run_cli: RunCli,
        tmp_path: Path,
    ) -> None:
        webui.inject(route_answers={path: answer})
        result = run(run_cli, write_job(tmp_path, webui.url), 3)
        assert words in result.err
        assert "secret page text" not in result.err and len(result.err) < 2000
        assert txt2img_count(webui) == 0 and not (tmp_path / "out").exists()

    def test_connection_refused_says_what_to_do(self, run_cli: RunCli, tmp_path: Path) -> None:
        url = f"http://127.0.0.1:{free_port()}"
        result = run(run_cli, write_job(tmp_path, url), 3)
        assert "connection refused (is the webui running, with --api? --wait N" in result.err
        assert "HTTPConnectionPool" not in result.err

    def test_an_html_error_for_an_image_is_summarised_never_shown(
        self, webui: MockWebui, run_cli: RunCli, tmp_path: Path
    ) -> None:
        webui.inject(route_answers={TXT2IMG: [502, "text/html", PAGE]})
        result = run(run_cli, write_job(tmp_path, webui.url), 1)
        found = check_output(tmp_path)
        assert found[0]["error"].startswith("HTTP 502: an HTML page ('Sign in')")
        assert "secret page text" not in result.err + recorded_text(tmp_path)


# -- several webuis, and a webui that always runs out of memory ---------------------------------
class TestServersThatFailOften:
    def test_one_of_two_servers_cutting_its_answers_leaves_the_other_going(
        self, webui: MockWebui, run_cli: RunCli, tmp_path: Path
    ) -> None:
        with MockWebui(seed=99) as other:
            webui.inject(tamper="cut", tamper_next=1000)
            job = write_job(tmp_path, webui.url, seeds=6, batch=1)
            result = bounded(
                lambda: run_cli(
                    "run",
                    str(job),
                    "--server",
                    webui.url,
                    "--server",
                    other.url,
                    "--out",
                    str(tmp_path / "out"),
                    expect=None,
                )
            )
            found = check_output(tmp_path)
            made = [r for r in found if r["status"] == "ok"]
            failed = [r for r in found if r["status"] == "failed"]
            assert result.code == (1 if failed else 0)
            assert len(made) + len(failed) == 6 and made
            assert all(r["server"] == other.url for r in made)
            assert all("cut off" in r["error"] for r in failed)
            assert txt2img_count(other) == len(made)

    def test_an_always_out_of_memory_webui_stops_the_splitting(self, webui: MockWebui) -> None:
        webui.inject(
            fail_next=10**6, fail_error="OutOfMemoryError", fail_message="CUDA out of memory"
        )
        sleeps: list[float] = []
        worker = Worker(ServerConfig(url=webui.url, timeout=10, retries=3), sleep=sleeps.append)
        outcome = worker.submit(item(batch_size=32))
        assert not outcome.ok and outcome.error is not None and "out of memory" in outcome.error
        # Halving down to one image takes 5 splits and that image gets its OOM_RETRIES; then
        # every half left over needs at least its memory, so none is sent: 8 requests, where
        # splitting it all took 127.
        sent = [r.body["batch_size"] for r in webui.requests if r.path == TXT2IMG]
        assert sent == [32, 16, 8, 4, 2] + [1] * (1 + OOM_RETRIES)
        assert len(sleeps) == OOM_RETRIES


# -- settings that would start unbounded work ---------------------------------------------------
class TestSettings:
    def test_concurrency_100000_starts_no_threads_and_sends_nothing(
        self, webui: MockWebui, run_cli: RunCli, tmp_path: Path
    ) -> None:
        before = threading.active_count()
        result = run(run_cli, write_job(tmp_path, webui.url, concurrency=100000), 2)
        assert "concurrency is 1 to 32 generations at once per webui" in result.err
        assert webui.requests == [] and threading.active_count() <= before + 2

    def test_a_port_out_of_range_is_refused_before_sending(
        self, run_cli: RunCli, tmp_path: Path
    ) -> None:
        # In the job file the loader refuses it at its place; given on the command line, the
        # backend does, before any session is made.
        result = run(run_cli, write_job(tmp_path, "http://127.0.0.1:99999"), 2)
        assert "$.server.url: the port is out of range" in result.err
        job = write_job(tmp_path, "http://127.0.0.1:7860")
        result = run(run_cli, job, 2, "--server", "http://127.0.0.1:99999")
        assert "the port must be a number from 1 to 65535" in result.err


# -- TLS settings -----------------------------------------------------------------------------
@pytest.fixture
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MockWebui, Path]]:
    """A stand-in serving https with a self-signed certificate for 127.0.0.1 (kept apart from
    the job's dir), and that certificate."""
    certs = tmp_path_factory.mktemp("certs")
    cert, key = certs / "cert.pem", certs / "key.pem"
    make = f"openssl req -x509 -newkey rsa:2048 -nodes -days 2 -keyout {key} -out {cert}"
    subprocess.run(
        [*make.split(), "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with MockWebui(seed=1234, tls=context) as server:
        yield server, cert


class TestTLS:
    def test_a_verify_path_that_does_not_exist_is_refused(
        self, webui: MockWebui, run_cli: RunCli, tmp_path: Path
    ) -> None:
        job = write_job(tmp_path, webui.url, verify=str(tmp_path / "no-such-ca.pem"))
        result = run(run_cli, job, 2)
        assert "server.verify: no CA bundle at" in result.err and webui.requests == []

    @pytest.mark.parametrize("verify", ["cert", False], ids=["bundle", "off"])
    @pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
    def test_server_verify_wins_over_requests_ca_bundle(
        self,
        verify: str | bool,
        tls: tuple[MockWebui, Path],
        run_cli: RunCli,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        server, cert = tls
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "elsewhere.pem"))
        chosen = str(cert) if verify == "cert" else False
        run(run_cli, write_job(tmp_path, server.url, verify=chosen), 0)
        assert [r["status"] for r in check_output(tmp_path)] == ["ok", "ok"]
