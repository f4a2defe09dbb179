"""Secrets against broken or hostile servers: credentials and custom headers never go to
another origin, never come back out of a server's text into a record or a message, and
credentials that cannot go on the wire are refused before anything is sent.

The webui is the stand-in (with HTTP Basic auth on); a redirect's target is a small recording
server in this module. Each case checks the exit code and message, that no traceback escaped,
that it ended in bounded time, and that no secret is in any output: stdout, stderr, the log
file, the manifest, the summary, the plan and the gallery.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import CliResult, RunCli
from hostile_cli import run

from sdbatch.backends.a1111.attempt import TXT2IMG
from sdbatch.standin.a1111 import MockWebui

USER, PASSWORD = "bob", "pw-Zq81-horse-battery"
TOKEN = "tok-7f3a9c1e55d2b840"
BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
SECRETS = (PASSWORD, TOKEN, BASIC)


# -- helpers ----------------------------------------------------------------------------------
def write_job(tmp_path: Path, url: str, **server: Any) -> Path:
    job = {
        "name": "secrets",
        "server": {
            "url": url,
            "timeout": 10,
            "retries": 0,
            "headers": {"X-Api-Token": "${HOSTILE_TOKEN}"},
            **server,
        },
        "defaults": {"steps": 2, "width": 64, "height": 64},
        "prompts": ["a cat"],
        "seeds": [1],
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def everything_written(tmp_path: Path, result: CliResult) -> str:
    """stdout, stderr and every text file under tmp_path (log, manifest, summary, gallery)."""
    files = [p for p in sorted(tmp_path.rglob("*")) if p.is_file() and p.suffix != ".png"]
    texts = [p.read_bytes().decode("utf-8", "replace") for p in files]
    return "\n".join([result.out, result.err, *texts])


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def failed_errors(tmp_path: Path) -> list[str]:
    manifest = tmp_path / "out" / "manifest.jsonl"
    found = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    return [r["error"] for r in found if r["status"] == "failed"]


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTILE_TOKEN", TOKEN)
    monkeypatch.setenv("SDBATCH_API_AUTH", f"{USER}:{PASSWORD}")


@pytest.fixture
def guarded() -> Iterator[MockWebui]:
    """A stand-in webui behind HTTP Basic auth."""
    with MockWebui(seed=1234, auth=(USER, PASSWORD)) as server:
        yield server


class Recorder:
    """Any server on another port: records every request that reaches it, with its headers."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []
        seen = self.seen

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                seen.append(dict(self.headers.items()))
                self.send_response(200)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            do_GET = do_POST = _any

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    yield server
    server.close()


# -- redirects to another origin --------------------------------------------------------------
class TestRedirects:
    @pytest.mark.parametrize("status", [301, 302, 307, 308])
    @pytest.mark.parametrize("host", ["127.0.0.1", "localhost"], ids=["other-port", "other-host"])
    def test_an_image_request_redirected_elsewhere_sends_nothing_there(
        self,
        status: int,
        host: str,
        guarded: MockWebui,
        recorder: Recorder,
        secret_env: None,
        run_cli: RunCli,
        tmp_path: Path,
    ) -> None:
        target = f"http://{host}:{recorder.port}{TXT2IMG}"
        guarded.inject(route_answers={TXT2IMG: [status, "text/plain", "", {"Location": target}]})
        result = run(run_cli, write_job(tmp_path, guarded.url), 1)
        assert recorder.seen == []
        (error,) = failed_errors(tmp_path)
        assert "another origin; sdbatch does not follow it" in error
        assert_no_secret(everything_written(tmp_path, result))

    def test_a_preflight_redirected_elsewhere_stops_the_run(
        self,
        guarded: MockWebui,
        recorder: Recorder,
        secret_env: None,
        run_cli: RunCli,
        tmp_path: Path,
    ) -> None:
        target = f"http://127.0.0.1:{recorder.port}/login"
        guarded.inject(
            route_answers={"/sdapi/v1/samplers": [302, "text/plain", "", {"Location": target}]}
        )
        result = run(run_cli, write_job(tmp_path, guarded.url), 3)
        assert "GET /sdapi/v1/samplers: the server redirected" in result.err
        assert recorder.seen == [] and not any(r.path == TXT2IMG for r in guarded.requests)
        assert_no_secret(everything_written(tmp_path, result))


# -- secrets a server sends back --------------------------------------------------------------
class TestEchoedSecrets:
    def test_headers_echoed_in_an_error_body_are_masked_everywhere(
        self, guarded: MockWebui, secret_env: None, run_cli: RunCli, tmp_path: Path
    ) -> None:
        guarded.inject(tamper="echo_headers", tamper_next=10)
        log = tmp_path / "sdbatch.log"
        job = write_job(tmp_path, guarded.url, retries=1)
        result = run(run_cli, job, 1, "--log-file", str(log))
        (error,) = failed_errors(tmp_path)
        # The echo itself is recorded, with every secret in it masked.
        assert "headers were" in error and "'***'" in error
        assert "headers were" in log.read_text()
        assert_no_secret(everything_written(tmp_path, result))
        assert (tmp_path / "out" / "index.html").exists()  # the gallery was checked too

    def test_headers_echoed_in_a_good_answer_are_masked_in_its_rows(
        self, guarded: MockWebui, secret_env: None, run_cli: RunCli, tmp_path: Path
    ) -> None:
        guarded.inject(tamper="echo_headers_in_info", tamper_next=10)
        result = run(run_cli, write_job(tmp_path, guarded.url), 0)
        manifest = (tmp_path / "out" / "manifest.jsonl").read_text()
        assert "X-Api-Token" in manifest and "***" in manifest  # recorded, masked
        assert_no_secret(everything_written(tmp_path, result))

    def test_a_password_in_the_url_is_never_echoed(
        self, guarded: MockWebui, run_cli: RunCli, tmp_path: Path
    ) -> None:
        url = guarded.url.replace("http://", f"http://{USER}:{PASSWORD}@")
        job = write_job(tmp_path, url, headers={})
        from_file = run(run_cli, job, 2)
        from_flag = run(run_cli, write_job(tmp_path, guarded.url, headers={}), 2, "--server", url)
        assert "with no user:password@" in from_file.err and "not in the URL" in from_flag.err
        assert_no_secret(everything_written(tmp_path, from_file) + from_flag.err)
        assert guarded.requests == []


# -- credentials that cannot go on the wire ---------------------------------------------------
HEADERS = [
    ({"X-Api-Token": "${HOSTILE_TOKEN}"}, f"{TOKEN}\r\nX-Injected: 1", "line break (CR/LF)"),
    ({"X-Api-Token": "${HOSTILE_TOKEN}"}, f"{TOKEN}\n", "line break (CR/LF)"),
    ({"X-Api-Token": "${HOSTILE_TOKEN}"}, f"{TOKEN}-токен", "Latin-1 text only"),
    ({"X Api Token": "${HOSTILE_TOKEN}"}, TOKEN, "is not a valid HTTP header name"),
]


class TestCredentialsRefusedBeforeSending:
    @pytest.mark.parametrize(
        ("headers", "value", "words"), HEADERS, ids=["crlf", "lf", "cyrillic", "bad-name"]
    )
    def test_a_header_that_cannot_be_sent_is_exit_2(
        self,
        headers: dict[str, str],
        value: str,
        words: str,
        guarded: MockWebui,
        run_cli: RunCli,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setenv("HOSTILE_TOKEN", value)
        result = run(run_cli, write_job(tmp_path, guarded.url, headers=headers), 2)
        assert words in result.err
        assert guarded.requests == [] and not (tmp_path / "out").exists()
        assert_no_secret(everything_written(tmp_path, result))

    @pytest.mark.parametrize("password", ["pässwörd-long", "pass\r\nword-long", "密码密码密码"])
    def test_a_password_the_webui_cannot_take_is_exit_2_and_not_echoed(
        self,
        password: str,
        guarded: MockWebui,
        run_cli: RunCli,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setenv("SDBATCH_API_AUTH", f"{USER}:{password}")
        result = run(run_cli, write_job(tmp_path, guarded.url, headers={}), 2)
        assert (
            "the password holds a character the webui's HTTP Basic auth cannot take" in result.err
        )
        assert password not in everything_written(tmp_path, result)
        assert guarded.requests == []
