"""The static index.html gallery: its HTML, and (where Chromium is installed) a real browser."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import RunCli
from conftest import manifest_rows as rows

from sdbatch.pictures.gallery import build_gallery
from sdbatch.standin.a1111 import MockWebui

CHROMIUM = "/usr/bin/chromium"
NASTY = 'a <b>cat</b> "quoted" & </script><script>alert(1)</script>'
STEPS, CFGS = [10, 20], [3, 5, 7]


class Page(HTMLParser):
    """Collects tags, their attributes, and the JSON data blob."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.data_blob = ""
        self._in_data = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_data = tag == "script" and dict(attrs).get("id") == "data"

    def handle_endtag(self, tag: str) -> None:
        self._in_data = False

    def handle_data(self, data: str) -> None:
        if self._in_data:
            self.data_blob += data


@pytest.fixture
def run_dir(webui: MockWebui, run_cli: RunCli, tmp_path: Path) -> Path:
    """A 2x3 steps x cfg_scale run whose first-answered payload failed."""
    webui.inject(fail_next=1, fail_status=422, fail_message="rejected <because>")
    job = {
        "name": "g",
        "defaults": {"width": 64, "height": 64},
        "prompts": [NASTY],
        "grid": {"steps": STEPS, "cfg_scale": CFGS},
        "seeds": [7],
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    out = tmp_path / "run"
    run_cli("run", str(path), "--server", webui.url, "--out", str(out), expect=1)
    return out


def test_html_has_one_image_per_ok_row_escaped_and_self_contained(run_dir: Path) -> None:
    text = build_gallery(run_dir).read_text()
    page = Page()
    page.feed(text)
    ok = [r for r in rows(run_dir) if r["status"] == "ok"]
    imgs = [attrs for tag, attrs in page.tags if tag == "img"]
    assert sorted(str(a["src"]) for a in imgs) == sorted(r["file"] for r in ok) and len(ok) == 5
    # The prompt's markup stays text: one script for data, one for code, no <b>.
    assert [t for t, _ in page.tags].count("script") == 2 and "b" not in [t for t, _ in page.tags]
    # The prompt is the same in every row: listed once, at the top, not on the cards.
    assert "prompt" not in json.loads(page.data_blob)["rows"][0]
    assert text.count("&lt;b&gt;cat&lt;/b&gt; &quot;quoted&quot; &amp;") == 1
    for _, attrs in page.tags:
        for name in ("src", "href"):
            assert not str(attrs.get(name) or "").startswith(("http:", "https:", "//")), attrs
    assert "failed: HTTP 422" in text and "rejected &lt;because&gt;" in text


def chromium_page() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    if not Path(CHROMIUM).exists():
        pytest.skip("headless Chromium not installed: apt-get install chromium")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            yield browser.new_page()
        finally:
            browser.close()


@pytest.fixture
def browser_page() -> Iterator[Any]:
    yield from chromium_page()


def test_gallery_filters_and_sorts_in_a_real_browser(
    run_dir: Path, tmp_path: Path, browser_page: Any
) -> None:
    build_gallery(run_dir)
    # Copied elsewhere, the page still finds every image: links are relative.
    copy = shutil.copytree(run_dir, tmp_path / "elsewhere" / "copy")
    problems: list[str] = []
    page = browser_page
    page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else 0)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto((copy / "index.html").as_uri())
    page.wait_for_load_state("load")
    visible = "figure:not(.hidden)"
    assert page.locator(visible).count() == 5
    # Lazy images load once on screen: bring each into view, then wait for all of them.
    page.eval_on_selector_all("img", "xs => xs.forEach(x => x.scrollIntoView())")
    page.wait_for_function("Array.from(document.images).every(i => i.complete)")
    loaded = page.eval_on_selector_all("img", "xs => xs.map(x => x.naturalWidth)")
    assert loaded == [64] * 5
    ok = [r for r in rows(run_dir) if r["status"] == "ok"]
    page.select_option("#field", "steps")
    page.select_option("#value", "20")
    assert page.locator(visible).count() == sum(r["payload"]["steps"] == 20 for r in ok)
    assert page.inner_text("#count").startswith(f"{page.locator(visible).count()} of 5")
    page.select_option("#field", "")
    page.select_option("#sort", "cfg_scale")
    page.check("#desc")
    srcs = page.eval_on_selector_all(f"{visible} img", "xs => xs.map(x => x.getAttribute('src'))")
    cfg = {r["file"]: r["payload"]["cfg_scale"] for r in ok}
    assert [cfg[s] for s in srcs] == sorted(cfg.values(), reverse=True)
    assert page.locator("tr[data-i]").count() == 1  # the failed payload
    assert problems == []


def test_a_big_run_is_paged_and_every_image_is_on_one_page(run_dir: Path) -> None:
    build_gallery(run_dir, page_size=2)
    pages = sorted(run_dir.glob("index*.html"))
    assert [p.name for p in pages] == ["index-2.html", "index-3.html", "index.html"]
    figures: list[str] = []
    for page in pages:
        parsed = Page()
        parsed.feed(page.read_text())
        figures += [a["src"] or "" for tag, a in parsed.tags if tag == "img"]
        links = {a.get("href") for tag, a in parsed.tags if tag == "a"}
        assert {"index.html", "index-2.html", "index-3.html"} - {page.name} <= links
    assert sorted(figures) == sorted(p.name for p in run_dir.glob("*.png"))
    # Fewer pages later: the extra ones go, so no link points at a stale page.
    build_gallery(run_dir, page_size=4)
    assert sorted(p.name for p in run_dir.glob("index*.html")) == ["index-2.html", "index.html"]


def test_a_rerun_that_changed_nothing_draws_nothing(
    run_dir: Path, webui: MockWebui, run_cli: RunCli, tmp_path: Path
) -> None:
    job = tmp_path / "job.yaml"
    page = run_dir / "index.html"
    run_cli("run", str(job), "--server", webui.url, "--out", str(run_dir))  # makes the failed one
    drawn = page.stat().st_mtime_ns
    run_cli("run", str(job), "--server", webui.url, "--out", str(run_dir))  # nothing left
    assert page.stat().st_mtime_ns == drawn
    page.unlink()  # the pictures are gone: drawn again
    run_cli("run", str(job), "--server", webui.url, "--out", str(run_dir))
    assert page.exists()
