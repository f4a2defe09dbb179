"""Hands the payloads of a run to one or more webuis and collects their outcomes.

Entry point: `dispatch(payloads, workers, deliver, stopper, ...)`. Each webui gets
`concurrency + 1` request threads pulling from one shared queue: `concurrency` generating and
one more waiting in the webui's FIFO queue, so its GPU starts the next image the moment it
finishes one instead of idling while the answer travels and the next request arrives. Only
payloads of one checkpoint are in flight at a webui at a time, so it loads each checkpoint of
the plan once (see `_Queue`). A webui that cannot be reached is taken out for a cool-down and
its payload goes back to the front of the queue for the others; when every webui is out at
once, the run stops.
"""

from __future__ import annotations

import collections
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sdbatch.backends.base import Outcome, Worker
from sdbatch.errors import SdbatchError, ServerUnreachableError
from sdbatch.plan.expand import PlannedPayload
from sdbatch.run.progress import Console
from sdbatch.run.report import signal_name

COOL_DOWN = 60.0  # seconds a webui that could not be reached sits out
_TICK = 0.2  # how often waiting threads look at the stop flags
HARD_STOP_SECONDS = 10.0  # how long a hard stop keeps interrupting
_INTERRUPT_EVERY = 0.5


@dataclass(frozen=True)
class HardStop:
    """What the second signal did, for summary.json."""

    interrupts: int  # /interrupt requests sent
    seconds: float  # until none of this run's requests was left at a webui, or the bound
    left: int  # this run's requests still at a webui when sdbatch gave up waiting
    idle: bool  # every webui said it runs no job at the end

    def as_json(self) -> dict[str, Any]:
        return {
            "interrupts": self.interrupts,
            "seconds": round(self.seconds, 2),
            "requests_left": self.left,
            "webui_idle": self.idle,
        }


class Stopper:
    """SIGINT/SIGTERM handling. The first signal stops new payloads and lets the ones at the
    webuis finish and be saved; a second one interrupts them (see `dispatch`) and stops."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.signum: int | None = None
        self.hard = threading.Event()
        self.hard_stop: HardStop | None = None
        self._saved: dict[int, Any] = {}

    def __call__(self, signum: int, frame: object) -> None:
        if self.signum is None:
            self.signum = signum
            # A stop the user asked for: said plainly, not labelled an error.
            again = "press Ctrl-C again" if signum == signal.SIGINT else "send it again"
            self.console.notice(
                f"{signal_name(signum)}: stopping; finishing the request(s) in flight "
                f"({again} to interrupt them)"
            )
            return
        if not self.hard.is_set():
            self.console.notice("interrupting the webui and stopping now")
        self.hard.set()

    def __enter__(self) -> Stopper:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._saved[signum] = signal.signal(signum, self)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._saved.items():
            signal.signal(signum, handler)


class _Queue:
    """The payloads still to send, in plan order, and the checkpoint each webui has in flight.

    `take` waits while others are out being sent, since one of them may come back (its webui was
    lost) and need a taker. It also holds the next payload back from a webui that has payloads
    of another checkpoint in flight, until they are done: the plan orders checkpoints outermost
    so each loads once, but a webui runs its requests in the order they arrive, and of two
    request threads taking the last payload of one checkpoint and the first of the next, the
    second now and then got there first (A, B, A, B: two loads too many). A webui free of other
    checkpoints may take it meanwhile; nothing overtakes it, which would reorder the plan."""

    def __init__(self, payloads: Iterator[PlannedPayload]) -> None:
        self._payloads = payloads
        self._returned: collections.deque[PlannedPayload] = collections.deque()
        self._next: PlannedPayload | None = None  # drawn from the plan, not taken yet
        self._exhausted = False
        # url -> (checkpoint, payloads out there): one checkpoint per webui at a time.
        self._flight: dict[str, tuple[str | None, int]] = {}
        self._cond = threading.Condition()
        self.closed = False

    def _head(self) -> PlannedPayload | None:
        if self._returned:
            return self._returned[0]
        if self._next is None and not self._exhausted:
            self._next = next(self._payloads, None)
            self._exhausted = self._next is None
        return self._next

    def take(
        self, url: str, model: Callable[[PlannedPayload], str | None]
    ) -> PlannedPayload | None:
        """The next payload for webui `url`, whose checkpoint `model` tells; None when there is
        none for it within a tick (the caller looks at its stop flags and asks again) or ever
        (`finished`)."""
        deadline = time.monotonic() + _TICK
        with self._cond:
            while not self.closed:
                item = self._head()
                if item is None and not self._flight:
                    return None
                if item is not None:
                    wanted = model(item)
                    # A webui with nothing out takes any checkpoint.
                    held, out = self._flight.get(url, (wanted, 0))
                    if held == wanted:
                        if self._returned:
                            self._returned.popleft()
                        else:
                            self._next = None
                        self._flight[url] = (wanted, out + 1)
                        return item
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            return None

    def done(self, url: str, item: PlannedPayload, *, failed_here: bool = False) -> None:
        with self._cond:
            held, out = self._flight[url]
            if out > 1:
                self._flight[url] = (held, out - 1)
            else:
                del self._flight[url]
            if failed_here:
                self._returned.append(item)
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    @property
    def finished(self) -> bool:
        """Nothing left to hand out and nothing out that could come back."""
        with self._cond:
            return self.closed or (self._exhausted and not self._flight and not self._returned)


@dataclass
class _Servers:
    """Which webuis sit out a cool-down, and the error that stopped the run, if any."""

    urls: list[str]
    clock: Callable[[], float]
    out_until: dict[str, float] = field(default_factory=dict)
    error: SdbatchError | None = None
    crash: Exception | None = None  # an unexpected exception in a request thread
    at: collections.Counter[str] = field(default_factory=collections.Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def lost(self, url: str, exc: ServerUnreachableError, console: Console) -> None:
        with self.lock:
            now = self.clock()
            self.out_until[url] = now + COOL_DOWN
            if all(self.out_until.get(u, 0) > now for u in self.urls):
                self.error = self.error or exc
            elif len(self.urls) > 1:
                console.error(f"{exc}; {url} sits out {COOL_DOWN:g} s, the others go on")

    def submit(self, worker: Worker, item: PlannedPayload) -> Outcome:
        """`worker.submit`, counted while it is out: a hard stop interrupts until none is."""
        with self.lock:
            self.at[worker.url] += 1
        try:
            return worker.submit(item)
        finally:
            with self.lock:
                self.at[worker.url] -= 1

    def open_requests(self, url: str | None = None) -> int:
        """This run's requests at webui `url`, or at all of them."""
        with self.lock:
            return self.at[url] if url is not None else sum(self.at.values())

    def resting(self, url: str) -> float:
        with self.lock:
            return self.out_until.get(url, 0) - self.clock()


def dispatch(
    payloads: Iterator[PlannedPayload],
    workers: list[Worker],
    deliver: Callable[[Outcome], None],
    stopper: Stopper,
    console: Console,
    *,
    concurrency: int = 1,
    should_stop: Callable[[], bool] = lambda: False,
    clock: Callable[[], float] = time.monotonic,
) -> SdbatchError | None:
    """Send every payload to some webui, pass each outcome to `deliver`; return the error that
    stopped the run early (every webui lost), if any."""
    queue = _Queue(payloads)
    servers = _Servers([w.url for w in workers], clock)

    def stopping() -> bool:
        return (
            stopper.signum is not None
            or servers.error is not None
            or servers.crash is not None
            or should_stop()
        )

    def serve(worker: Worker) -> None:
        while not stopping():
            rest = servers.resting(worker.url)
            if rest > 0:
                if queue.finished:  # the others did it all while this webui sat out
                    return
                time.sleep(min(rest, _TICK))
                continue
            try:
                item = queue.take(worker.url, worker.model)
            except Exception as exc:  # a bug in telling the checkpoint, as below
                servers.crash = servers.crash or exc
                return
            if item is None:
                if queue.finished:
                    return
                continue  # held back a tick (or nothing to do yet): look at the flags again
            try:
                outcome = servers.submit(worker, item)
            except ServerUnreachableError as exc:
                queue.done(worker.url, item, failed_here=True)
                servers.lost(worker.url, exc, console)
                continue
            except SdbatchError as exc:
                servers.error = servers.error or exc
                queue.done(worker.url, item)
                return
            except Exception as exc:  # a bug: stop the run and show it, rather than hang
                servers.crash = servers.crash or exc
                queue.done(worker.url, item)
                return
            queue.done(worker.url, item)
            # An answer that comes after the webui was told to interrupt may hold a
            # half-denoised image: it is not saved, and the rerun makes it properly.
            if not stopper.hard.is_set():
                deliver(outcome)

    # Daemon threads, unlike a ThreadPoolExecutor's, do not hold the process open at exit, so
    # a hard stop need not wait for a request the webui is still working on.
    threads = [
        threading.Thread(target=serve, args=(w,), name=f"sdbatch-{w.url}-{n}", daemon=True)
        for w in workers
        for n in range(concurrency + 1)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        # What is already at a webui is generated whether we wait or not (it does not notice a
        # client going away), so after a first signal it is still collected and saved.
        while thread.is_alive() and not stopper.hard.is_set():
            thread.join(_TICK)
            if stopping():
                queue.close()
    if stopper.hard.is_set():
        stopper.hard_stop = _interrupt_until_idle(workers, servers, console, clock)
    if servers.crash is not None:
        raise servers.crash
    return servers.error


def _interrupt_until_idle(
    workers: list[Worker],
    servers: _Servers,
    console: Console,
    clock: Callable[[], float],
    sleep: Callable[[float], None] = time.sleep,
) -> HardStop:
    """Interrupt every webui holding a request of this run until none holds one, at most
    HARD_STOP_SECONDS. An interrupt stops only the running job: the request queued behind it
    then starts (OBSERVED 8), so once is not enough. Our own open requests are the measure,
    not /progress, which cannot see a queue; other clients' jobs are left alone."""
    start = clock()
    interrupts = 0
    while servers.open_requests() > 0 and clock() - start < HARD_STOP_SECONDS:
        for worker in workers:
            if servers.open_requests(worker.url) > 0:
                worker.interrupt()
                interrupts += 1
        sleep(_INTERRUPT_EVERY)
    left = servers.open_requests()
    idle = not any(worker.busy() for worker in workers)
    seconds = clock() - start
    if left:
        console.warning(
            f"{left} request(s) of this run were still at the webui after {seconds:.0f} s of "
            "interrupting; they will run to their end there"
        )
    else:  # what the user asked for: no error
        state = "is idle" if idle else "still runs a job of another client"
        console.notice(f"interrupted the webui ({interrupts}x in {seconds:.1f} s): it {state}")
    return HardStop(interrupts, seconds, left, idle)
