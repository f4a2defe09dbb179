"""The writer's group commit: images are on disk before their rows, and rows reach the
manifest only together, on `flush` — a crash in between leaves images a rerun adopts."""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image

from sdbatch.backends.base import GeneratedImage, Outcome, Response
from sdbatch.job.loader import load_job
from sdbatch.output.manifest import MANIFEST
from sdbatch.output.writer import RunInfo, Writer
from sdbatch.plan.expand import build_plan

ROOT = Path(__file__).resolve().parents[2]


def png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (seed % 256, 0, 0)).save(buffer, "PNG")
    return buffer.getvalue()


def decode(response: Response) -> list[GeneratedImage]:
    seed = int(response.payload["seed"])
    return [GeneratedImage(0, png(seed), seed, response.payload, {})]


def test_rows_wait_for_a_flush_and_their_images_do_not(tmp_path: Path) -> None:
    items = list(build_plan(load_job(ROOT / "jobs" / "cats.yaml")))
    writer = Writer(tmp_path, "{index:05d}-{seed}", RunInfo("cats", "d", "t"), decode=decode)
    try:
        for item in items[:3]:
            response = Response(item.payload, 0, b"")
            writer.write(Outcome(item, (response,), None, 1, 0.0, 0.0, "http://x"))
        assert writer.pending == 3
        assert not (tmp_path / MANIFEST).read_bytes()  # nothing recorded yet
        assert len(list(tmp_path.glob("*.png"))) == 3  # but the images are in place
        flushed = writer.flush()
        assert [r["seed"] for r in flushed] == [i.payload["seed"] for i in items[:3]]
        lines = (tmp_path / MANIFEST).read_text().splitlines()
        assert [json.loads(line)["file"] for line in lines] == [r["file"] for r in flushed]
        assert writer.pending == 0 and writer.flush() == []
    finally:
        writer.close()


def test_an_image_left_by_a_crash_before_its_row_is_adopted(tmp_path: Path) -> None:
    item = next(iter(build_plan(load_job(ROOT / "jobs" / "cats.yaml"))))
    outcome = Outcome(item, (Response(item.payload, 0, b""),), None, 1, 0.0, 0.0, "http://x")
    first = Writer(tmp_path, "{index:05d}-{seed}", RunInfo("cats", "d", "t"), decode=decode)
    first.write(outcome)
    first.close()  # killed before its flush: the file is there, its row is not
    again = Writer(tmp_path, "{index:05d}-{seed}", RunInfo("cats", "d", "t"), decode=decode)
    try:
        again.write(outcome)
        (row,) = again.flush()
    finally:
        again.close()
    assert [p.name for p in tmp_path.glob("*.png")] == [row["file"]]  # one file, adopted
