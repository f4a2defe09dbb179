"""`MockWebui`: the stand-in server object — lifecycle, options, and the txt2img job itself."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from PIL import Image

from sdbatch.mockwebui import generation, images, output
from sdbatch.mockwebui.catalog import Catalog
from sdbatch.mockwebui.errors import Dropped, webui_exception
from sdbatch.mockwebui.faults import FaultInjector, FaultSettings
from sdbatch.mockwebui.records import GeneratedImage, LoggedRequest, Recorder
from sdbatch.mockwebui.server import MockHTTPServer
from sdbatch.mockwebui.state import FifoLock, JobState

# Bigger images would only exhaust the test machine; the webui would run out of VRAM too.
MAX_PIXELS = 4096 * 4096


class MockWebui:
    """A stand-in for A1111 v1.10.1 `--api` on a real loopback socket (see package docs)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        auth: tuple[str, str] | None = None,
        step_delay: float = 0.0,
        image_delay: float = 0.0,
        samples_format: str = "png",
        seed: int | None = None,
        catalog: Catalog | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.host, self.port, self.auth = host, port, auth
        self.step_delay, self.image_delay = step_delay, image_delay
        self.catalog: Catalog = catalog or Catalog()
        self.clock, self._wall_clock = clock, wall_clock
        # Separate generators: drawing fault dice must not shift the seeds a job gets.
        self._seed_rng = random.Random(seed)
        self._faults = FaultInjector(random.Random(None if seed is None else seed + 1))
        self._options = self.catalog.default_options()
        self._options["samples_format"] = samples_format
        self._options_lock = threading.Lock()
        self.queue_lock = FifoLock()
        self.state = JobState(clock)
        self.recorder = Recorder()
        self.stopping = threading.Event()
        self._httpd: MockHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> MockWebui:
        httpd = MockHTTPServer((self.host, self.port), self)
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"mockwebui:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop promptly: running and hung requests wake up and their connections are dropped."""
        if self._httpd is None:
            return
        self.stopping.set()
        self.state.shut_down()
        self._httpd.shutdown()
        self._httpd.drop_connections()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None

    def __enter__(self) -> MockWebui:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # -- observation and fault injection ---------------------------------------------------
    @property
    def requests(self) -> list[LoggedRequest]:
        return self.recorder.requests

    @property
    def generated(self) -> list[GeneratedImage]:
        return self.recorder.generated

    @property
    def txt2img_count(self) -> int:
        return self.recorder.txt2img_count

    @property
    def busy_seconds(self) -> float:
        return self.recorder.busy_seconds

    @property
    def first_start(self) -> float | None:
        """Server clock when the first job took the queue lock (for utilisation figures)."""
        return self.recorder.busy_window[0]

    @property
    def last_end(self) -> float | None:
        return self.recorder.busy_window[1]

    @property
    def queue_depth(self) -> int:
        """Requests generating or waiting for the queue lock."""
        return self.queue_lock.waiting

    def inject(self, *, seed: int | None = None, **settings: Any) -> FaultSettings:
        """Set any subset of the FaultSettings fields (fail_next, fail_status, fail_error,
        fail_message, reset_next, hang_next, hang_seconds, fail_rate, reset_rate,
        oom_above_batch, oom_seeds, slow_next, slow_seconds); the others keep their values.
        `seed` reseeds the dice behind fail_rate/reset_rate."""
        return self._faults.update(seed=seed, **settings)

    @property
    def faults(self) -> FaultInjector:
        return self._faults

    def reset(self) -> None:
        """Clear faults and every log."""
        self._faults.clear()
        self.recorder.clear()

    # -- options ---------------------------------------------------------------------------
    def options(self) -> dict[str, Any]:
        with self._options_lock:
            return dict(self._options)

    def set_options(self, changes: Mapping[str, Any]) -> None:
        """POST /sdapi/v1/options semantics (unknown key: 500 KeyError; unknown checkpoint:
        500 RuntimeError); a checkpoint switch waits for the queue like the webui's."""
        with self._options_lock:
            for key in changes:
                if key not in self._options:
                    raise webui_exception("KeyError", repr(key))
        updates = dict(changes)
        if "sd_model_checkpoint" in updates:
            ckpt = self.catalog.checkpoint(str(updates["sd_model_checkpoint"]))
            if ckpt is None:
                raise webui_exception(
                    "RuntimeError", f"model {updates['sd_model_checkpoint']!r} not found"
                )
            updates["sd_model_checkpoint"] = ckpt.title
            updates["sd_checkpoint_hash"] = ckpt.sha256
            with self.queue_lock, self._options_lock:
                self._options.update(updates)
            return
        with self._options_lock:
            self._options.update(updates)

    # -- txt2img ---------------------------------------------------------------------------
    def txt2img(self, req: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[int, ...]]:
        """Generate for a validated request; returns the response body and the seeds used."""
        generation.check_scripts(req, self.catalog)
        with self.queue_lock:
            if self.stopping.is_set():
                raise Dropped
            start = self.clock()
            try:
                job, pictures = self._run_job(req)
            finally:
                self.recorder.busy(start, self.clock())
        # The webui encodes after releasing the queue lock, so encoding isn't "GPU" time.
        return output.respond(job, pictures), job.seeds[: len(pictures)]

    def _run_job(self, req: Mapping[str, Any]) -> tuple[generation.Job, list[Image.Image]]:
        opts, ckpt = generation.apply_overrides(
            self.options(), req["override_settings"], self.catalog
        )
        if req["override_settings"] and not req["override_settings_restore_afterwards"]:
            self._persist_overrides(req["override_settings"])
        if req["prompt"] is None:  # process_images_inner: assert p.prompt is not None
            raise webui_exception("AssertionError", "")
        stamp = time.strftime("%Y%m%d%H%M%S", time.localtime(self._wall_clock()))
        job = generation.plan_job(req, opts, ckpt, self.catalog, self._seed_rng, stamp)
        width, height = job.size
        if width <= 0 or height <= 0 or width * height > MAX_PIXELS:
            raise webui_exception(
                "OutOfMemoryError",
                f"CUDA out of memory. Tried to allocate {width}x{height} (sdbatch stand-in)",
            )
        n_iter, batch = max(1, req["n_iter"] or 1), max(1, req["batch_size"] or 1)
        oom = self._faults.out_of_memory(batch, job.seeds)
        if oom is not None:
            raise oom
        self.recorder.job_started(self.clock())
        steps = max(0, req["steps"] or 0)
        self.state.begin("scripts_txt2img", n_iter, stamp)
        pictures: list[Image.Image] = []
        try:
            self.state.wait(self._faults.take_slow())  # an injected long job; interruptible
            for it in range(n_iter):
                if self.state.interrupted or self.stopping.is_set():
                    break  # remaining n_iter batches are skipped
                label = f"Batch {it + 1} out of {n_iter}" if n_iter > 1 else "scripts_txt2img"
                self.state.next_batch(it, label, steps)
                self._sample(steps, batch)
                # An interrupted batch still returns its (partially denoised) images.
                for pos in range(batch):
                    pictures.append(self._picture(job, it * batch + pos))
        finally:
            self.state.end()
        return job, pictures

    def _persist_overrides(self, changes: Mapping[str, Any]) -> None:
        # override_settings_restore_afterwards=false keeps the overrides; we already hold the
        # queue lock, and an unknown checkpoint is dropped silently as in process_images.
        updates = dict(changes)
        ckpt = self.catalog.checkpoint(str(updates.get("sd_model_checkpoint", "")))
        if "sd_model_checkpoint" in updates:
            if ckpt is None:
                updates.pop("sd_model_checkpoint")
            else:
                updates["sd_model_checkpoint"] = ckpt.title
        with self._options_lock:
            self._options.update(updates)

    def _sample(self, steps: int, batch: int) -> None:
        for step in range(steps):
            if self.state.stop_requested():
                return
            self.state.wait(self.step_delay * batch)
            self.state.step(step + 1)
        if not self.state.stop_requested():
            self.state.wait(self.image_delay * batch)

    def _picture(self, job: generation.Job, index: int) -> Image.Image:
        req = job.req
        prompt = req["prompt"]
        self.recorder.image(
            GeneratedImage(
                prompt=prompt,
                negative_prompt=req["negative_prompt"],
                seed=job.seeds[index],
                subseed=job.subseeds[index],
                width=job.size[0],
                height=job.size[1],
                steps=req["steps"],
                cfg_scale=req["cfg_scale"],
                sampler_name=job.sampler,
                schedule_type=job.schedule,
                model=job.checkpoint.title,
                job_timestamp=job.timestamp,
                index=index,
                time=self.clock(),
            )
        )
        label = [
            prompt[:40],
            f"seed {job.seeds[index]}",
            f"steps {req['steps']}  cfg {req['cfg_scale']}",
            job.sampler,
        ]
        return images.render(job.size[0], job.size[1], job.seeds[index], label, prompt)
