"""Issue 13, pictures: the sheets and gallery a new user asks for, and how they hold up in a
hostile output dir. Every run is a real one against the stand-in; every hostile dir is real
(files, symlinks, FIFOs, a read-only or full tmpfs in a private mount namespace).

Classes, in order: sheet layout and names; cells the job excluded; what the gallery shows;
manifest rows naming files outside the dir; planted temp files and symlinked folders;
read-only and full output dirs.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import yaml
from conftest import RunCli
from PIL import Image

from sdbatch.pictures.sheet import build_sheets, render_sheets
from sdbatch.pictures.sheetdraw import BACKGROUND, EXCLUDED_FILL, PLACEHOLDER
from sdbatch.standin.a1111 import MockWebui

TIMEOUT = 60
NASTY = '<img src=x onerror="window.pwned=1"> </script><script>window.pwned=2</script> & "q"'


def run_job(
    run_cli: RunCli, webui: MockWebui, tmp_path: Path, expect: int = 0, **spec: Any
) -> Path:
    """Run a job (64x64 images unless it says otherwise) into tmp_path/out."""
    job = {"name": "p", "prompts": ["a lighthouse"], "seeds": [7], **spec}
    job["defaults"] = {"width": 64, "height": 64, **spec.get("defaults", {})}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    out = tmp_path / "out"
    run_cli("run", str(path), "--server", webui.url, "--out", str(out), expect=expect)
    return out


def manifest(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def sdbatch(*args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    """`sdbatch ARGS` in its own process, bounded."""
    cmd = [sys.executable, "-m", "sdbatch", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def share(image: Image.Image, box: tuple[int, int, int, int], colour: tuple[int, ...]) -> float:
    """The share of the box's pixels that are exactly `colour`."""
    colours = image.crop(box).convert("RGB").getcolors(maxcolors=1 << 20) or []
    area = (box[2] - box[0]) * (box[3] - box[1])
    return sum(n for n, c in colours if c == colour) / area


class Html(HTMLParser):
    """Links, image sources, the text of each card and table row, and the shared-fields top."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.cards: list[list[str]] = []  # the <dt> names of each card
        self.rows: list[str] = []  # the text of each "not shown" row
        self.top = ""
        self._where: list[str] = []
        self._in_dt = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for name in ("href", "src"):
            if a.get(name):
                self.urls.append(str(a[name]))
        if tag == "figure":
            self.cards.append([])
        if tag == "tr" and "data-i" in a:
            self.rows.append("")
        if tag == "section" and a.get("class") == "common":
            self._where.append("top")
        elif tag in ("figure", "tr", "section"):
            self._where.append(tag)
        self._in_dt = tag == "dt"

    def handle_endtag(self, tag: str) -> None:
        if tag in ("figure", "tr", "section") and self._where:
            self._where.pop()
        self._in_dt = False

    def handle_data(self, data: str) -> None:
        where = self._where[-1] if self._where else ""
        if where == "figure" and self._in_dt:
            self.cards[-1].append(data)
        elif where == "tr" and self.rows:
            self.rows[-1] += data + " "
        elif where == "top":
            self.top += data + " "


def inside(out: Path, url: str) -> bool:
    """A relative URL, without scheme, that names a path inside `out`."""
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or url.startswith("/") or url.startswith("data:"):
        return url == "data:,"  # the favicon stub
    target = (out / unquote(parts.path)).resolve()
    return target == out.resolve() or out.resolve() in target.parents


def _browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
        )
        try:
            yield browser.new_page()
        finally:
            browser.close()


# --- sheets: a gap between cells, a folder per slicing, no null in names -----------------------


def test_cells_stand_apart_with_white_between_them(
    webui: MockWebui, run_cli: RunCli, tmp_path: Path
) -> None:
    out = run_job(run_cli, webui, tmp_path, grid={"steps": [10, 20], "cfg_scale": [3, 7]})
    (built,) = render_sheets(out, x="cfg_scale", y="steps")
    lay = built.layout
    with Image.open(built.path) as image:
        sheet = image.convert("RGB")
    left, right = lay.slot_box(0, 0, 0), lay.slot_box(1, 0, 0)
    above, below = lay.slot_box(0, 0, 0), lay.slot_box(0, 1, 0)
    assert right[0] - left[2] >= 6 and below[1] - above[3] >= 6
    assert share(sheet, (left[2], left[1], right[0], left[3]), BACKGROUND) == 1.0
    assert share(sheet, (above[0], above[3], above[2], below[1]), BACKGROUND) == 1.0


def test_reslicing_keeps_the_jobs_own_sheet(
    webui: MockWebui, run_cli: RunCli, tmp_path: Path
) -> None:
    grid = {"steps": [10, 20], "cfg_scale": [3, 7]}
    out = run_job(run_cli, webui, tmp_path, grid=grid, sheet={"x": "cfg_scale", "y": "steps"})
    (own,) = (out / "sheets").rglob("*.png")
    before = own.read_bytes()
    result = run_cli("sheet", str(out), "--x", "steps", "--y", "cfg_scale")
    (new,) = [Path(line) for line in result.out.split()]
    assert new != own and new.is_file() and own.read_bytes() == before
    assert "null" not in str(new.relative_to(out)) and "None" not in str(new.relative_to(out))
    # Both slicings are linked from the gallery, once it is redrawn.
    run_cli("gallery", str(out))
    urls = Html((out / "index.html").read_text()).urls
    assert {own.relative_to(out).as_posix(), new.relative_to(out).as_posix()} <= {
        unquote(u) for u in urls
    }


def test_null_values_give_readable_sheet_names(tmp_path: Path) -> None:
    """A z axis, and a field that splits sheets, holding null among their values."""
    rows = []
    for n, (steps, style, clip) in enumerate(
        (s, st, c) for c in (None, 2) for st in (None, "oil") for s in (10, 20)
    ):
        Image.new("RGB", (8, 8), (n * 20, 0, 0)).save(tmp_path / f"{n}.png")
        rows.append(
            {
                "id": str(n),
                "status": "ok",
                "file": f"{n}.png",
                "seed": 1,
                "payload_index": n,
                "cell": {"steps": steps, "style": style},
                "payload": {"prompt": "p", "seed": 1, "clip_skip": clip, "width": 8, "height": 8},
            }
        )
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    names = [p.relative_to(tmp_path).as_posix() for p in build_sheets(tmp_path, x="steps", y=None)]
    names += [p.name for p in build_sheets(tmp_path, x="steps", y=None, z="style")]
    assert len(set(names)) == len(names) == 8
    for name in names:
        assert "null" not in name and "None" not in name, name
    assert any("no-style" in n for n in names) and any("no-clip_skip" in n for n in names)


def test_long_non_ascii_values_still_make_file_names(tmp_path: Path) -> None:
    """Names keep letters of any script (4 bytes each in UTF-8, at worst), and stay within
    the 255 bytes a file name may have."""
    z = "𝔰𝔱𝔶𝔩𝔢" * 20
    rows = []
    for n, (steps, pose) in enumerate((s, p) for p in ("𝔭" * 40, "𝔮" * 40) for s in (1, 2)):
        Image.new("RGB", (8, 8)).save(tmp_path / f"{n}.png")
        cell = {"steps": steps, "style": z, "pose": pose}
        payload = {"prompt": "p", "seed": 1, "width": 8, "height": 8}
        rows.append({"id": str(n), "status": "ok", "file": f"{n}.png", "seed": 1, "cell": cell})
        rows[-1].update(payload_index=n, payload=payload)
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    paths = build_sheets(tmp_path, x="steps", y=None, z="style")
    assert len(paths) == 2 and len({p.name for p in paths}) == 2
    for path in paths:
        assert path.is_file() and len(path.name.encode()) <= 255 and "𝔰𝔱𝔶𝔩𝔢" in path.name


# --- cells the job's exclude: removed ----------------------------------------------------------


def test_excluded_cells_say_so_and_missing_ones_still_say_missing(
    webui: MockWebui, run_cli: RunCli, tmp_path: Path
) -> None:
    grid = {"sampler_name": ["Euler", "DPM++ 2M"], "steps": [10, 20], "cfg_scale": [3, 7]}
    # One rule on the two sheet axes, one on the z axis and a row axis.
    rules = [{"steps": 20, "cfg_scale": 7}, {"sampler_name": "DPM++ 2M", "steps": 10}]
    out = run_job(run_cli, webui, tmp_path, grid=grid, exclude=rules)
    # A lost image: its row gone from the manifest, as after a crash.
    kept = [
        r for r in manifest(out) if r["payload"]["cfg_scale"] != 3 or r["payload"]["steps"] != 20
    ]
    (out / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
    built = {b.path.stem: b for b in render_sheets(out, x="cfg_scale", y="steps", z="sampler_name")}
    assert set(built) == {"sheet-Euler", "sheet-DPM++_2M"}

    def state(stem: str, col: int, row: int) -> str:
        with Image.open(built[stem].path) as image:
            box = built[stem].layout.slot_box(col, row, 0)
            if share(image, box, EXCLUDED_FILL) > 0.6:
                return "excluded"
            return "missing" if share(image, box, PLACEHOLDER) > 0.6 else "image"

    # Columns cfg 3, 7; rows steps 10, 20.
    assert [[state("sheet-Euler", c, r) for c in (0, 1)] for r in (0, 1)] == [
        ["image", "image"],
        ["missing", "excluded"],
    ]
    assert [[state("sheet-DPM++_2M", c, r) for c in (0, 1)] for r in (0, 1)] == [
        ["excluded", "excluded"],
        ["missing", "excluded"],
    ]


# --- what the gallery shows --------------------------------------------------------------------


def test_gallery_shows_shared_fields_once_and_cards_show_what_varies(
    webui: MockWebui, run_cli: RunCli, tmp_path: Path
) -> None:
    out = run_job(run_cli, webui, tmp_path, prompts=[NASTY], grid={"steps": [10, 20]})
    page = Html((out / "index.html").read_text())
    assert page.cards == [["steps"], ["steps"]]
    assert NASTY in page.top and "seed" in page.top and "64x64" in page.top


def test_thumbnails_are_small_made_once_and_only_for_new_images(
    webui: MockWebui, run_cli: RunCli, tmp_path: Path
) -> None:
    spec: dict[str, Any] = {"defaults": {"width": 512, "height": 512}, "seeds": [1, 2]}
    out = run_job(run_cli, webui, tmp_path, **spec)
    page = Html((out / "index.html").read_text())
    thumbs = sorted(unquote(u) for u in page.urls if u.startswith("thumbs/"))
    assert len(thumbs) == 2
    for name in thumbs:
        with Image.open(out / name) as thumb:
            assert max(thumb.size) <= 256
    made = {name: (out / name).stat().st_mtime_ns for name in thumbs}
    for browser in _browser():  # what a browser decodes: the small copies
        browser.goto((out / "index.html").as_uri())
        browser.eval_on_selector_all("img", "xs => xs.forEach(x => x.scrollIntoView())")
        browser.wait_for_function("Array.from(document.images).every(i => i.complete)")
        sizes = browser.eval_on_selector_all("img", "xs => xs.map(x => x.naturalWidth)")
        assert sizes == [256, 256]
    # The full image is a click away.
    assert sorted(u for u in page.urls if u.endswith(".png")) == sorted(
        r["file"] for r in manifest(out)
    )
    run_job(run_cli, webui, tmp_path, **{**spec, "seeds": [1, 2, 3]})
    page = Html((out / "index.html").read_text())
    now = sorted(unquote(u) for u in page.urls if u.startswith("thumbs/"))
    assert len(now) == 3 and set(thumbs) < set(now)
    assert {name: (out / name).stat().st_mtime_ns for name in thumbs} == made


def test_failed_payloads_show_their_values_and_error(
    webui: MockWebui, run_cli: RunCli, tmp_path: Path
) -> None:
    webui.inject(fail_next=1, fail_status=422, fail_message="<b>cfg</b> too high")
    out = run_job(run_cli, webui, tmp_path, expect=1, grid={"steps": [10, 20], "cfg_scale": [3]})
    (failed,) = [r for r in manifest(out) if r["status"] == "failed"]
    page = Html((out / "index.html").read_text())
    (row,) = page.rows
    assert f"steps {failed['payload']['steps']}" in row
    assert "<b>cfg</b> too high" in row  # as text: the parser saw no <b> tag


def test_hostile_text_stays_text_in_a_real_browser(
    webui: MockWebui, run_cli: RunCli, tmp_path: Path
) -> None:
    webui.inject(fail_next=1, fail_status=422, fail_message=NASTY)
    out = run_job(run_cli, webui, tmp_path, expect=1, prompts=[NASTY], grid={"steps": [10, 20]})
    for page in _browser():
        page.goto((out / "index.html").as_uri())
        page.wait_for_load_state("load")
        assert page.evaluate("window.pwned") is None
        assert NASTY in page.inner_text("section.common")
        assert NASTY in page.inner_text("td.why")
        assert page.locator("figure").count() == 1


# --- manifest rows naming files outside the output dir, images that are not, plan.json -----


def test_rows_naming_files_outside_are_neither_linked_nor_read(
    webui: MockWebui, run_cli: RunCli, tmp_path: Path
) -> None:
    out = run_job(run_cli, webui, tmp_path, grid={"steps": [10, 20]})
    secret = tmp_path / "secret"
    secret.mkdir()
    red = secret / "red.png"
    Image.new("RGB", (512, 512), (255, 0, 0)).save(red)
    (out / "link.png").symlink_to(red)
    (out / "sub").symlink_to(secret)
    os.mkfifo(out / "fifo.png")
    names = [
        "../secret/red.png",
        str(red),
        "javascript:alert(1)",
        "link.png",
        "sub/red.png",
        "fifo.png",
        "/dev/zero",
        "./../secret/red.png",
    ]
    rows = manifest(out)
    extra = [{**rows[n % 2], "id": f"evil{n}", "file": name} for n, name in enumerate(names)]
    with (out / "manifest.jsonl").open("a") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in extra)
    for args in (["gallery", str(out)], ["sheet", str(out), "--x", "steps"]):
        result = sdbatch(*args)
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
    for url in Html((out / "index.html").read_text()).urls:
        assert inside(out, url), url
    assert not (out / "thumbs").exists() or not any((out / "thumbs").iterdir())
    (sheet,) = (out / "sheets").rglob("*.png")
    with Image.open(sheet) as image:
        assert share(image, (0, 0, *image.size), (255, 0, 0)) == 0.0
    assert sorted(p.name for p in secret.iterdir()) == ["red.png"]


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims width x height RGB pixels and holds the first few rows of them."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compressobj().compress(b"\0" * (3 * width + 1) * 4)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows)


def test_an_image_claiming_gigapixels_is_never_decoded(
    webui: MockWebui, run_cli: RunCli, tmp_path: Path
) -> None:
    spec: dict[str, Any] = {"defaults": {"width": 512, "height": 512}, "grid": {"steps": [10, 20]}}
    out = run_job(run_cli, webui, tmp_path, **spec)
    rows = manifest(out)
    bomb = out / rows[0]["file"]
    bomb.write_bytes(png_header(10_000, 10_000))  # past Pillow's warning limit
    shutil.rmtree(out / "thumbs", ignore_errors=True)
    for args in (["gallery", str(out)], ["sheet", str(out), "--x", "steps"]):
        result = sdbatch(*args)
        assert result.returncode == 0, result.stderr
        assert "DecompressionBomb" not in result.stderr and "Traceback" not in result.stderr
    # No thumbnail of it; the other image has one.
    assert len(list((out / "thumbs").iterdir())) == 1
    (sheet,) = (out / "sheets").rglob("*.png")
    (built,) = render_sheets(out, x="steps", y=None)
    with Image.open(sheet) as image:
        col = [10, 20].index(rows[0]["payload"]["steps"])
        assert share(image, built.layout.slot_box(col, 0, 0), PLACEHOLDER) > 0.6
        assert share(image, built.layout.slot_box(1 - col, 0, 0), PLACEHOLDER) == 0.0


@pytest.mark.parametrize("plan", ["fifo", "nested", "outside"])
def test_a_tampered_plan_json_is_not_trusted(
    plan: str, webui: MockWebui, run_cli: RunCli, tmp_path: Path
) -> None:
    grid = {"steps": [10, 20], "cfg_scale": [3, 7]}
    out = run_job(run_cli, webui, tmp_path, grid=grid, exclude=[{"steps": 20, "cfg_scale": 7}])
    (out / "plan.json").unlink()
    if plan == "fifo":
        os.mkfifo(out / "plan.json")  # reading it would wait forever
    elif plan == "nested":
        (out / "plan.json").write_text("[" * 200_000 + "]" * 200_000)
    else:
        outside = tmp_path / "elsewhere.json"
        outside.write_text(json.dumps({"axes": {"steps": [10, 20, 30]}, "exclude": []}))
        (out / "plan.json").symlink_to(outside)
    result = sdbatch("sheet", str(out), "--x", "cfg_scale", "--y", "steps")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    (built,) = render_sheets(out, x="cfg_scale", y="steps")
    # The manifest alone: the rows it has (no 30 from the file outside).
    assert [label.text for label in built.layout.row_labels] == ["10", "20"]


# --- planted temp files and symlinked folders ---------------------------------------------------


def test_stale_temp_files_are_swept_and_planted_ones_not_followed(
    webui: MockWebui, run_cli: RunCli, tmp_path: Path
) -> None:
    out = run_job(run_cli, webui, tmp_path, grid={"steps": [10, 20]})
    folder = out / "sheets" / "steps-x-1"
    folder.mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched")
    dead = folder / ".sheet-all.png.99999999.tmp"  # above any pid_max: a killed drawer's
    dead.write_bytes(b"half a png")
    (folder / ".looks-like.99999998.tmp").mkdir()
    (folder / f".sheet-all.png.{os.getpid()}.tmp").symlink_to(victim)
    (path,) = build_sheets(out, x="steps", y=None)
    assert victim.read_text() == "untouched"
    assert not dead.exists() and (folder / ".looks-like.99999998.tmp").is_dir()
    assert sorted(p.name for p in folder.iterdir()) == [".looks-like.99999998.tmp", path.name]
    with Image.open(path) as image:
        image.load()


@pytest.mark.parametrize("name", ["sheets", "thumbs"])
def test_a_symlinked_picture_folder_is_refused(
    name: str, webui: MockWebui, run_cli: RunCli, tmp_path: Path
) -> None:
    spec: dict[str, Any] = {"defaults": {"width": 320, "height": 320}, "grid": {"steps": [10, 20]}}
    out = run_job(run_cli, webui, tmp_path, **spec)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.rmtree(out / name, ignore_errors=True)
    (out / name).symlink_to(elsewhere)
    command = "sheet" if name == "sheets" else "gallery"
    result = sdbatch(command, str(out))
    assert result.returncode == 3, result.stderr
    assert f"{out / name} is a symbolic link" in result.stderr and "Traceback" not in result.stderr
    assert list(elsewhere.iterdir()) == []


# --- read-only and full output dirs -------------------------------------------------------------

# A private mount namespace (`unshare`): a small tmpfs over MNT holding a copy of the run, made
# read-only or filled up, then sdbatch in it; the mount vanishes with the process.
_IN_TMPFS = """
mount -t tmpfs -o size=4m tmpfs "$1" && cp -a "$2/." "$1" || exit 90
case "$3" in
  ro) mount -o remount,ro "$1" || exit 91 ;;
  full) dd if=/dev/zero of="$1/filler" bs=4096 2>/dev/null; true ;;
esac
before=$(sha256sum "$1/index.html")
shift 3
"$@"
code=$?
[ "$before" = "$(sha256sum "$MNT_PAGE")" ] || exit 92
exit $code
"""


def in_tmpfs(run_dir: Path, mount: Path, mode: str, *args: str) -> subprocess.CompletedProcess[str]:
    mount.mkdir()
    cmd = [sys.executable, "-m", "sdbatch", *[a.replace(str(run_dir), str(mount)) for a in args]]
    env = {**os.environ, "MNT_PAGE": str(mount / "index.html")}
    return subprocess.run(
        ["unshare", "-rm", "sh", "-c", _IN_TMPFS, "sh", str(mount), str(run_dir), mode, *cmd],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        env=env,
    )


@pytest.mark.parametrize("mode", ["ro", "full"])
@pytest.mark.parametrize("command", ["gallery", "sheet"])
def test_an_unwritable_output_dir_is_one_clear_line(
    mode: str, command: str, webui: MockWebui, run_cli: RunCli, tmp_path: Path
) -> None:
    out = run_job(run_cli, webui, tmp_path, grid={"steps": [10, 20]})
    result = in_tmpfs(out, tmp_path / "mnt", mode, command, str(out))
    assert result.returncode == 3, (result.returncode, result.stderr)
    reason = "Read-only file system" if mode == "ro" else "No space left on device"
    assert reason in result.stderr and "cannot write" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1  # and the page there stays whole (92)
