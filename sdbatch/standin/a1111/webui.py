"""`MockWebui`: the stand-in server object — lifecycle, options, and the txt2img/img2img job."""

from __future__ import annotations

import random
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from PIL import Image

from sdbatch.standin.a1111 import behaviours, generation, images, img2img, output, routes
from sdbatch.standin.a1111.behaviours import Behaviour
from sdbatch.standin.a1111.catalog import Catalog, Checkpoint
from sdbatch.standin.a1111.errors import Dropped, webui_exception
from sdbatch.standin.a1111.faults import FaultInjector
from sdbatch.standin.a1111.observe import Observation
from sdbatch.standin.a1111.records import Recorder
from sdbatch.standin.a1111.server import MockHTTPServer
from sdbatch.standin.a1111.state import FifoLock, JobState
from sdbatch.standin.a1111.substitution import Substitution

# Bigger images would only exhaust the test machine; the webui would run out of VRAM too.
MAX_PIXELS = 4096 * 4096
NANS_MESSAGE = (
    "A tensor with NaNs was produced in Unet. Use --disable-nan-check commandline argument to "
    "disable this check."
)


class MockWebui(Observation):
    """A stand-in for A1111 v1.10.1 `--api` (or, with `behaviour`, v1.9, v1.8, Forge or
    SD.Next) on a real loopback socket (see package docs).

    `substitute` ({"sampler_name": "Euler a"}, or scheduler, sd_model_checkpoint, steps,
    cfg_scale, width, height) makes it silently use that value instead of the requested one.
    `model_loads` counts checkpoint loads after startup; each takes `model_load_delay` seconds.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        auth: tuple[str, str] | None = None,
        step_delay: float = 0.0,
        image_delay: float = 0.0,
        samples_format: str = "png",
        noise: bool = False,
        seed: int | None = None,
        catalog: Catalog | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        behaviour: str | Behaviour = "v1.10",
        substitute: Mapping[str, str] | None = None,
        model_load_delay: float = 0.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.host, self.port, self.auth = host, port, auth
        self.tls = tls  # serve https with this server context (tests of TLS settings)
        self.step_delay, self.image_delay = step_delay, image_delay
        self.noise = noise  # pictures that do not compress, as big as real ones
        chosen = behaviours.get(behaviour) if isinstance(behaviour, str) else behaviour
        # An explicit catalog replaces the behaviour's installed models and samplers.
        self.behaviour: Behaviour = replace(chosen, catalog=catalog) if catalog else chosen
        self.catalog: Catalog = self.behaviour.catalog
        self.substitution = Substitution.parse(substitute or {}, self.behaviour)
        self.model_load_delay = model_load_delay
        self.routes = routes.routes_for(self)
        self.clock, self._wall_clock = clock, wall_clock
        # Separate generators: drawing fault dice must not shift the seeds a job gets.
        self._seed_rng = random.Random(seed)
        self._faults = FaultInjector(random.Random(None if seed is None else seed + 1))
        self._options = self.catalog.default_options()
        self._options["samples_format"] = samples_format
        # The configured checkpoint is loaded at startup; later loads are counted.
        self._loaded: Checkpoint = self.catalog.checkpoints[0]
        self._hashed = {c.filename for c in self.catalog.checkpoints if c.hashed}
        self._hashed.add(self._loaded.filename)
        self._hash_lock = threading.Lock()  # callers may hold the options lock
        self._model_loads = 0
        self._options_lock = threading.Lock()
        # opts.data: the keys config.json holds (the start script writes only the checkpoint)
        # plus every key set since; only these are restored after an override.
        self._data_keys = {"sd_model_checkpoint"}
        self.queue_lock = FifoLock()
        self.state = JobState(clock)
        self.recorder = Recorder()
        self.stopping = threading.Event()
        self._httpd: MockHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> MockWebui:
        httpd = MockHTTPServer((self.host, self.port), self)
        if self.tls is not None:
            httpd.socket = self.tls.wrap_socket(httpd.socket, server_side=True)
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = httpd.serve_in_thread(f"mockwebui:{self.port}")
        return self

    def stop(self) -> None:
        """Stop promptly: running and hung requests wake up and their connections are dropped."""
        if self._httpd is None:
            return
        self.stopping.set()
        self.state.shut_down()
        self._httpd.close()
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
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    # -- models ----------------------------------------------------------------------------
    def checkpoint(self, alias: str) -> Checkpoint | None:
        """sd_models.get_closet_checkpoint_match by alias, as far as the hashes are known."""
        with self._hash_lock:
            hashed = set(self._hashed)
        return next(
            (c for c in self.catalog.checkpoints if alias in c.aliases_now(c.filename in hashed)),
            None,
        )

    def models(self) -> list[dict[str, Any]]:
        with self._hash_lock:
            return [c.as_json(c.filename in self._hashed) for c in self.catalog.checkpoints]

    # -- options ---------------------------------------------------------------------------
    def options(self) -> dict[str, Any]:
        with self._options_lock:
            return dict(self._options)

    def options_json(self) -> dict[str, Any]:
        """GET /sdapi/v1/options: as held, but some numbers as floats once set."""
        wire = self.catalog.float_on_wire
        with self._options_lock:
            return {
                k: float(v) if k in wire and k in self._data_keys and not isinstance(v, bool) else v
                for k, v in self._options.items()
            }

    def set_options(self, changes: Mapping[str, Any]) -> None:
        """POST /sdapi/v1/options semantics (unknown key: 500 KeyError; unknown checkpoint:
        500 RuntimeError); a checkpoint switch waits for the queue like the webui's."""
        with self._options_lock:
            for key in changes:
                if key not in self._options:
                    raise webui_exception("KeyError", repr(key))
        updates = dict(changes)
        if "sd_model_checkpoint" in updates:
            ckpt = self.checkpoint(str(updates["sd_model_checkpoint"]))
            if ckpt is None:
                raise webui_exception(
                    "RuntimeError", f"model {updates['sd_model_checkpoint']!r} not found"
                )
            updates["sd_model_checkpoint"] = ckpt.title
            updates["sd_checkpoint_hash"] = ckpt.sha256
            with self.queue_lock:
                with self._options_lock:
                    self._options.update(updates)
                    self._data_keys.update(updates)
                self._load(ckpt)
            return
        with self._options_lock:
            self._options.update(updates)
            self._data_keys.update(updates)

    # -- txt2img ---------------------------------------------------------------------------
    def txt2img(self, req: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[int, ...]]:
        """Generate for a validated request (img2img's too: it holds `init_images`); returns the
        response body and the seeds used."""
        generation.check_scripts(req, self.catalog)
        used = self.substitution.request(req)
        # Sampler validation (a 404 on v1.8/v1.9/SD.Next) happens before the queue lock.
        self.behaviour.resolve(used, self.catalog)
        with self.queue_lock:
            if self.stopping.is_set():
                raise Dropped
            start = self.clock()
            try:
                job, pictures = self._run_job(used)
            finally:
                self.recorder.busy(start, self.clock())
        # The webui encodes after releasing the queue lock, so encoding isn't "GPU" time; the
        # `parameters` echo is the request as sent, even when a value was substituted.
        return output.respond(job, pictures, echo=req), job.seeds[: len(pictures)]

    def _load(self, ckpt: Checkpoint) -> None:
        """Load `ckpt` unless it is loaded already; the caller holds the queue lock."""
        if ckpt == self._loaded:
            return
        self._model_loads += 1
        self._loaded = ckpt
        with self._options_lock:  # load_model records the hash of what it loaded
            self._options["sd_checkpoint_hash"] = ckpt.sha256
        with self._hash_lock:
            self._hashed.add(ckpt.filename)
        self.stopping.wait(self.model_load_delay)

    def _run_job(self, req: Mapping[str, Any]) -> tuple[generation.Job, list[Image.Image]]:
        """process_images: the overrides are set on the shared options for the job, and with
        restore_afterwards only those already in `opts.data` are put back (OBSERVED 1): an
        option no one had set before stays set for every later request, from any client."""
        overrides: Mapping[str, Any] = req["override_settings"] or {}
        # img2img's pictures are decoded before the overrides apply: a bad one changes nothing.
        init = img2img.Init.of(req)
        with self._options_lock:
            stored = {k: self._options[k] for k in overrides if k in self._data_keys}
        try:
            self._set_overrides(overrides)
            return self._generate(req, init)
        finally:
            if req["override_settings_restore_afterwards"]:
                with self._options_lock:
                    self._options.update(stored)

    def _set_overrides(self, changes: Mapping[str, Any]) -> None:
        """One key after the other, as opts.set does: an unknown key is a KeyError that leaves
        the keys before it applied; an unknown checkpoint is silently ignored."""
        for key, value in changes.items():
            with self._options_lock:
                if key not in self._options:
                    raise webui_exception("KeyError", repr(key))
                if key == "sd_model_checkpoint":
                    ckpt = self.checkpoint(str(value))
                    if ckpt is None:
                        continue
                    with self._hash_lock:  # the load that follows hashes it
                        self._hashed.add(ckpt.filename)
                    value = ckpt.title
                if self._options[key] != value:  # opts.set keeps an equal value as it was
                    self._options[key] = value
                self._data_keys.add(key)

    def _generate(
        self, req: Mapping[str, Any], init: img2img.Init | None
    ) -> tuple[generation.Job, list[Image.Image]]:
        opts = self.options()
        ckpt = self.checkpoint(str(opts["sd_model_checkpoint"])) or self._loaded
        # An override restored afterwards leaves its model loaded; the next request that does
        # not name it reloads the configured one (OBSERVED 2).
        ckpt = self.substitution.model(ckpt)
        self._load(ckpt)
        if req["prompt"] is None:  # process_images_inner: assert p.prompt is not None
            raise webui_exception("AssertionError", "")
        if req["steps"] == 0:  # the sampler's step schedule divides by the step count
            raise webui_exception("ZeroDivisionError", "integer division or modulo by zero")
        stamp = time.strftime("%Y%m%d%H%M%S", time.localtime(self._wall_clock()))
        job = generation.plan_job(req, opts, ckpt, self.behaviour, self._seed_rng, stamp)
        if init is not None:
            job = init.adapt(job)
        width, height = job.size
        if width <= 0 or height <= 0 or width * height > MAX_PIXELS:
            raise webui_exception(
                "OutOfMemoryError",
                f"CUDA out of memory. Tried to allocate {width}x{height} (sdbatch stand-in)",
            )
        clip = opts["CLIP_stop_at_last_layers"]
        if isinstance(clip, float) and clip > 1:
            # hidden_states[-opts.CLIP_stop_at_last_layers]: a float an override_settings set
            # (as /options reports it, 2.0) breaks this and every later request (own/clip_float).
            raise webui_exception(
                "TypeError", "tuple indices must be integers or slices, not float"
            )
        if ckpt.nan:  # devices.test_for_nans after the first UNet step
            raise webui_exception("NansException", NANS_MESSAGE)
        n_iter, batch = max(1, req["n_iter"] or 1), max(1, job.req["batch_size"] or 1)
        oom = self._faults.out_of_memory(batch, job.seeds)
        if oom is not None:
            raise oom
        self.recorder.job_started(self.clock())
        steps = max(0, req["steps"] or 0) if init is None else init.steps
        task = "scripts_txt2img" if init is None else "scripts_img2img"
        self.state.begin(task, n_iter, stamp)
        pictures: list[Image.Image] = []
        try:
            self.state.wait(self._faults.take_slow())  # an injected long job; interruptible
            for it in range(n_iter):
                if self.state.interrupted or self.stopping.is_set():
                    break  # remaining n_iter batches are skipped
                label = f"Batch {it + 1} out of {n_iter}" if n_iter > 1 else task
                self.state.next_batch(it, label, steps)
                self._sample(steps, batch)
                # An interrupted batch still returns its (partially denoised) images.
                for pos in range(batch):
                    pictures.append(self._picture(job, it * batch + pos))
        finally:
            self.state.end()
        return job, pictures

    def _sample(self, steps: int, batch: int) -> None:
        for step in range(steps):
            if self.state.stop_requested():
                return
            self.state.wait(self.step_delay * batch)
            self.state.step(step + 1)
        if not self.state.stop_requested():
            self.state.wait(self.image_delay * batch)

    def _picture(self, job: generation.Job, index: int) -> Image.Image:
        self.recorder.image(output.record(job, index, self.clock()))
        if self.noise:
            return images.noise(job.size[0], job.size[1], job.seeds[index])
        return output.render(job, index)
