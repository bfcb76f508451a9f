"""The scheduler daemon behind ``did-monitor run``: cron sweeps with catch-up, delivery retries,
heartbeats, the web listener, and a graceful, bounded shutdown on SIGTERM, SIGINT or SIGHUP.

``Service`` applies ``schedule.py``'s decisions to APScheduler 3 with an in-memory job store: the
last complete sweep lives in our own tables, so nothing scheduler-specific survives a restart.
Start-up, the jobs and the bounded shutdown share one piece of state (the cancel flag, the
executor, the listener) whose ordering is the point.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from types import FrameType
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.executors.base import BaseExecutor, run_job
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger

from monitor.alerts.deliver import deliver_due
from monitor.alerts.notify import AppriseNotifier, Notifier
from monitor.alerts.outbox import Outbox
from monitor.clock import Clock
from monitor.config import Settings
from monitor.errors import LockBusy, LockLost, MonitorError, SweepCancelled
from monitor.health import Metrics, assess, describe_failure
from monitor.heartbeat import Heartbeat
from monitor.model import DeliveryOutcome
from monitor.pipeline import SweepOutcome, run_cycle
from monitor.schedule import (
    StartNowThen,
    build_trigger,
    catch_up,
    fire_at_or_after,
    retry_at,
    sweep_deadline,
)
from monitor.store import Store
from monitor.store.db import head_revision
from monitor.vobiz import http_client
from monitor.web.app import listener
from monitor.web.server import WebServer

log = logging.getLogger(__name__)
SWEEP_JOB = "sweep"
RETRY_JOB = "sweep-retry"
DELIVERY_JOB = "deliver"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
MIN_SKIP_RETRY = timedelta(minutes=1)  # a lease that already expired is retried this soon


# --- the executor -------------------------------------------------------------------------------


class _DaemonThreadExecutor(BaseExecutor):  # type: ignore[misc]  # APScheduler 3 is untyped
    """Runs each job on a daemon thread of its own.

    APScheduler's default pool is a ``concurrent.futures`` pool, whose workers the interpreter
    joins at exit: a job stuck in I/O would then hold the process past the shutdown bound until
    Docker kills it. A daemon thread is abandoned instead; a sweep cut off that way is left
    ``running`` and marked aborted by the next sweep, like any crash.
    """

    def __init__(self) -> None:
        super().__init__()
        self._threads: list[threading.Thread] = []
        self._guard = threading.Lock()

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        def target() -> None:
            try:
                events = run_job(job, job._jobstore_alias, run_times, self._logger.name)
            except BaseException as exc:
                self._run_job_error(job.id, exc, exc.__traceback__)
            else:
                self._run_job_success(job.id, events)

        thread = threading.Thread(target=target, name=f"did-monitor-{job.id}", daemon=True)
        thread.start()
        with self._guard:  # the ended ones are dropped here and in join
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for running jobs; True when none is left."""
        deadline = time.monotonic() + timeout
        while True:
            with self._guard:
                self._threads = running = [t for t in self._threads if t.is_alive()]
            if not running:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            running[0].join(left)


# --- the service --------------------------------------------------------------------------------


class Service:
    """``did-monitor run``: construct with the frozen settings and a migrated store, then call
    ``run_forever()`` from the main thread; it returns the process exit code.

    ``start()`` raises ``ConfigError`` (exit 2) when the listen address cannot be bound (a
    malformed one is refused when the config loads).
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        run_now: bool = False,
        notifier: Notifier | None = None,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.store = store
        self.run_now = run_now
        self.notifier: Notifier = notifier or AppriseNotifier(
            settings.alerts.delivery_timeout_seconds
        )
        self.clock = clock
        self.timezone = ZoneInfo(settings.schedule.timezone)
        # Jittered for the scheduler; ``schedule`` drops the jitter wherever it decides.
        self.trigger = build_trigger(settings.schedule)
        self.grace = timedelta(seconds=settings.schedule.misfire_grace_seconds)
        self.metrics = Metrics(
            store, [c.name for c in settings.channels], clock, settings.rules_zone
        )
        # One HTTP client for the service's lifetime: every sweep's API requests and the pings.
        self.http = http_client(settings.vobiz.concurrency, settings.vobiz.timeout_seconds)
        self.heartbeat = Heartbeat(
            settings.service.heartbeat_url, settings.service.fail_url, http=self.http
        )
        self.cancel = threading.Event()  # passed to run_cycle: set, the running sweep aborts
        self.started_at: datetime | None = None
        self._executor = _DaemonThreadExecutor()
        self.scheduler = BackgroundScheduler(
            jobstores={"default": MemoryJobStore()},
            executors={"default": self._executor},
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone=self.timezone,
        )
        self._stop = threading.Event()
        # Set when shutdown stops waiting for the final flush: its thread claims nothing more.
        self._flush_stop = threading.Event()
        self._signal: int | None = None
        self._next_trigger = "schedule"
        self._web: WebServer | None = None
        self._failed_sweeps = 0  # consecutive; a failed sweep is retried until one completes
        self._migrated = False
        self._head: str | None = None
        self._stopped = False
        # Set by shutdown when a job or the final flush was still running at its bound: the
        # process must then end without waiting for it (``did-monitor run`` does, with
        # ``os._exit``), or a send in Apprise's worker threads would hold it past the bound.
        self.left_behind = False

    # --- lifecycle ------------------------------------------------------------------------------

    def run_forever(self) -> int:
        """Start, wait for SIGTERM/SIGINT/SIGHUP (or ``stop()``), shut down; returns the exit
        code."""
        in_main = threading.current_thread() is threading.main_thread()  # or signals cannot be set
        previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS if in_main}
        try:
            self.start()
            # Polling the flag (not an Event set by the handler) keeps the signal handler free of
            # locks: a handler that takes a lock the interrupted main thread holds deadlocks.
            while self._signal is None and not self._stop.wait(0.2):
                pass
            if self._signal is not None:
                log.info("received %s: shutting down", signal.Signals(self._signal).name)
            return self.shutdown()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._signal is not None:  # a second signal: stop waiting for a graceful end
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(128 + signum)
        self._signal = signum

    def start(self) -> None:
        """Open the listener, decide on a catch-up sweep, start the scheduler."""
        self.started_at = now = self.clock()
        self._web = listener(
            self.settings,
            self.store,
            health=self.health,
            ready=self.readiness,
            registry=self.metrics.registry,
            clock=self.clock,
            next_sweep=self.next_sweep_at,
        )
        if self._web is not None:
            self._web.start()
        try:
            self._start_scheduler(now)
        except BaseException:
            if self._web is not None:
                self._web.stop()
            raise

    def _start_scheduler(self, now: datetime) -> None:
        reason = self.first_sweep_reason(now)
        trigger: BaseTrigger = self.trigger
        if reason is not None:
            self._next_trigger = reason
            # The cron job itself runs now, so coalescing and max_instances=1 cover this sweep too.
            trigger = StartNowThen(self.trigger)
        schedule = self.settings.schedule
        interval = self.settings.service.retry_interval_seconds
        every = IntervalTrigger(seconds=interval, timezone=self.timezone)
        for job, when, job_id, grace in (  # each job is named by its id
            (self.sweep_job, trigger, SWEEP_JOB, schedule.misfire_grace_seconds),
            (self.delivery_job, every, DELIVERY_JOB, interval),
        ):
            self.scheduler.add_job(job, when, id=job_id, name=job_id, misfire_grace_time=grace)
        self.scheduler.start()
        log.info(
            "did-monitor service started: schedule %r (%s), misfire grace %ds, jitter %ds, "
            "delivery retries every %ds; next sweep %s",
            schedule.cron,
            schedule.timezone,
            schedule.misfire_grace_seconds,
            schedule.jitter_seconds,
            interval,
            "now" if reason else self._format(self.next_sweep_at()),
        )

    def stop(self) -> None:
        """Ask ``run_forever`` to shut down, as SIGTERM does; safe to call from any thread."""
        self._stop.set()

    def shutdown(self) -> int:
        """Abort the running sweep, wait for it (bounded), flush deliveries, release everything.

        Waiting for the job and the final delivery flush share one budget,
        ``service.shutdown_timeout_seconds``: the flush gets what the running job left of it.
        Whatever still runs at the bound is left behind: a delivery being sent is handed back
        to the outbox for a retry at the next start (``Outbox``), and ``left_behind`` tells the
        caller to end the process without waiting for those threads.
        """
        if self._stopped:
            return 0
        self._stopped = True
        self.cancel.set()
        bound = float(self.settings.service.shutdown_timeout_seconds)
        deadline = time.monotonic() + bound
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if not self._executor.join(bound):
            self.left_behind = True
            log.warning(
                "a job was still running %gs after shutdown began; leaving it behind (an "
                "unfinished sweep is marked aborted by the next one)",
                bound,
            )
        if not self._final_flush(deadline):
            self.left_behind = True
        self._flush_stop.set()
        if self._web is not None:
            self._web.stop()
        self.store.dispose()
        self.http.close()
        if self.left_behind:
            # Last, so no thread left behind can claim a row after it (the outbox refuses from
            # then on) and the process ends right after (``os._exit``).
            self._release_cut_short()
        log.info("did-monitor service stopped")
        return 0

    def _release_cut_short(self) -> None:
        """Hand back deliveries abandoned mid-send, to be retried at the next start; a database
        that refuses leaves them to their claim lease."""
        try:
            released = Outbox(self.store).release_cut_short(self.clock())
        except MonitorError as exc:
            log.warning("cannot hand back the deliveries cut short: %s", describe_failure(exc))
            return
        if released:
            log.warning(
                "%d delivery(ies) cut short by the shutdown; they are retried at the next start",
                released,
            )

    # --- decisions --------------------------------------------------------------------------------

    def first_sweep_reason(self, now: datetime) -> str | None:
        """The trigger of a sweep to run at start ("start", "catch-up"), or None to wait for
        cron: ``schedule.catch_up`` decides, this reads its inputs and logs the outcome."""
        asked = self.run_now or self.settings.schedule.run_on_start
        last: Any = None
        unreadable = False
        if not asked:
            try:
                last = self.store.last_sweep("complete")
            except MonitorError as exc:
                log.warning(
                    "cannot read the last sweep (%s); sweeping now to be safe",
                    describe_failure(exc),
                )
                unreadable = True
        last_at = last["started_at"] if last else None
        decision = catch_up(
            self.trigger, last_at, now, self.grace, asked=asked, unreadable=unreadable
        )
        since = (last["id"], self._format(last_at)) if last else ()
        if decision is None:
            log.info(
                "no scheduled sweep missed since the last complete one (#%d, started %s)", *since
            )
            return None
        if decision.why == "asked":
            log.info("sweeping now: %s", "--once-now" if self.run_now else "schedule.run_on_start")
        elif decision.why == "never":
            log.info("catch-up: no complete sweep on record; sweeping now")
        elif decision.why == "missed":
            log.info(
                "catch-up: the sweep due %s was missed (last complete sweep #%d started %s); "
                "sweeping now, once",
                self._format(decision.missed),
                *since,
            )
        elif decision.why == "overdue":
            log.info(
                "catch-up: the last complete sweep (#%d, started %s) is overdue; sweeping once",
                *since,
            )
        return decision.trigger

    def next_sweep_at(self) -> datetime | None:
        """When the scheduler will sweep next (jitter included); from the cron when it is off."""
        job = self.scheduler.get_job(SWEEP_JOB) if self.scheduler.running else None
        if job is not None:
            when: datetime | None = job.next_run_time
            return when
        return fire_at_or_after(self.trigger, self.clock() + timedelta(seconds=1))

    # --- jobs (each catches, logs and records its own failure) ----------------------------------

    def sweep_job(self) -> SweepOutcome | None:
        """One sweep as the scheduler runs it; never raises. None when nothing was swept."""
        if self.cancel.is_set():
            return None
        trigger, self._next_trigger = self._next_trigger, "schedule"
        started = time.monotonic()
        outcome: SweepOutcome | None = None
        succeeded: bool | None = None  # None: skipped or cancelled, nothing to retry
        try:
            outcome = run_cycle(
                self.settings,
                self.store,
                self.notifier,
                trigger=trigger,
                clock=self.clock,
                cancel=self.cancel,
                http=self.http,
            )
        except LockBusy as exc:
            self.metrics.sweep_finished("skipped")
            self._retry_after_skip(exc)
        except LockLost as exc:
            log.warning("sweep aborted: %s; it is retried", exc.message)
            self.metrics.sweep_finished("aborted", time.monotonic() - started)
            succeeded = False
        except SweepCancelled:
            log.info("sweep aborted for shutdown: rolled back and recorded as aborted")
            self.metrics.sweep_finished("aborted", time.monotonic() - started)
        except Exception as exc:  # nothing kills the daemon: record it and wait for the next run
            self._job_failed(SWEEP_JOB, "sweep", exc)
            self.metrics.sweep_finished("error", time.monotonic() - started)
            self.heartbeat.failure()
            succeeded = False
        else:
            # The sweep's own status, as its row records it: a partial sweep is not complete.
            status = "failed" if not outcome.ok else "partial" if outcome.partial else "complete"
            succeeded = status == "complete"  # a partial sweep is retried too
            self.metrics.sweep_finished(status, outcome.duration)
            self.metrics.delivered(outcome.deliveries)
            # The heartbeat says a complete sweep happened, the fail ping that one failed; a
            # partial sweep is neither: it resets no dead-man's switch and trips none (its
            # retry, the /metrics rule and its channels' "sweep incomplete" speak for it).
            if status == "complete":
                self.heartbeat.success()
            elif status == "failed":
                self.heartbeat.failure()
        if not self.cancel.is_set():
            if succeeded is not None:
                self._schedule_retry(succeeded)
            log.info("next sweep %s", self._format(self.next_sweep_at()))
        return outcome

    def _job_failed(self, job: str, what: str, exc: Exception) -> None:
        if isinstance(exc, MonitorError):
            log.error("%s job failed: %s", what, exc.message)
        else:
            log.exception("%s job failed unexpectedly", what)
        self.metrics.job_errors.labels(job).inc()

    def _schedule_retry(self, succeeded: bool) -> None:
        """After a failure, sweep again soon (``schedule.RETRY_DELAYS``) until one completes;
        the cron schedule goes on as well."""
        if succeeded:
            if self._failed_sweeps:
                log.info("sweep complete after %d failed attempt(s)", self._failed_sweeps)
            self._failed_sweeps = 0
            return
        self._failed_sweeps += 1
        if not self.scheduler.running:
            return
        job = self.scheduler.get_job(SWEEP_JOB)
        next_fire = job.next_run_time if job is not None else None
        if (when := retry_at(self._failed_sweeps, self.clock(), next_fire)) is None:
            log.info("the failed sweep is retried at the next scheduled time")
            return
        self._add_retry(when, self._retry_job)
        log.info(
            "sweep failed %d time(s) in a row; retrying %s", self._failed_sweeps, self._format(when)
        )

    def _add_retry(self, when: datetime, func: Callable[..., None], *args: Any) -> None:
        self.scheduler.add_job(
            func,
            "date",
            run_date=when,
            args=args,
            id=RETRY_JOB,
            name="sweep retry",
            replace_existing=True,
            misfire_grace_time=None,
        )

    def _retry_job(self) -> None:
        self._next_trigger = "retry"
        self.sweep_job()

    def _retry_after_skip(self, busy: LockBusy) -> None:
        """Another sweep holds the lock: try again when its lease expires, not at the next
        cron fire (a week away, by default), in case that sweep never finishes."""
        when = max(busy.expires_at, self.clock() + MIN_SKIP_RETRY)
        log.warning(
            "sweep skipped: another did-monitor process (%s) holds the sweep lock, its lease "
            "expiring %s; trying again %s",
            busy.owner,
            self._format(busy.expires_at),
            self._format(when),
        )
        if not self.cancel.is_set() and self.scheduler.running:
            self._add_retry(when, self._after_skip_job, busy.held_since)

    def _after_skip_job(self, held_since: datetime) -> None:
        """Sweep, unless the sweep that held the lock completed: then nothing was missed."""
        try:
            last = self.store.last_sweep("complete")
        except MonitorError:
            last = None  # the sweep says what is wrong with the database
        if last is not None and last["started_at"] >= held_since:
            log.info("the sweep that held the lock completed (#%d); no retry needed", last["id"])
            return
        self._retry_job()

    def delivery_job(self) -> list[DeliveryOutcome]:
        """Send whatever the outbox has due (retries between sweeps); never raises."""
        if self.cancel.is_set():
            return []
        return self._deliver(self.cancel)  # a shutdown's final flush sends the rest

    def _deliver(self, stop: threading.Event) -> list[DeliveryOutcome]:
        try:
            outcomes = deliver_due(self.store, self.settings, self.notifier, self.clock, stop)
        except Exception as exc:  # nothing kills the daemon
            self._job_failed(DELIVERY_JOB, "delivery", exc)
            return []
        self.metrics.delivered(outcomes)
        return outcomes

    def _final_flush(self, deadline: float) -> bool:
        """Send what is due before stopping, until ``deadline``; False when a send was still
        running then (and is left behind)."""
        left = deadline - time.monotonic()
        if left <= 0:
            log.warning("no time left for a final delivery flush; queued alerts stay queued")
            return True
        outcomes: list[DeliveryOutcome] = []
        thread = threading.Thread(
            target=lambda: outcomes.extend(self._deliver(self._flush_stop)),
            name="did-monitor-flush",
            daemon=True,
        )
        thread.start()
        thread.join(left)
        if thread.is_alive():
            log.warning(
                "the final delivery flush did not finish in %.0fs; the rest stays queued", left
            )
            return False
        if outcomes:
            failed = sum(1 for o in outcomes if not o.ok)
            log.info(
                "final delivery flush: %d sent, %d failed (kept for retry)",
                len(outcomes) - failed,
                failed,
            )
        return True

    # --- probes -----------------------------------------------------------------------------------

    def health(self) -> tuple[bool, dict[str, Any]]:
        """``/healthz``: the scheduler runs and the last complete sweep is not overdue."""
        now = self.clock()
        last = self.store.last_sweep("complete")
        last_at: datetime | None = last["started_at"] if last is not None else None
        jitter = timedelta(seconds=self.settings.schedule.jitter_seconds)
        deadline = sweep_deadline(self.trigger, last_at, self.started_at or now, self.grace, jitter)
        return assess(
            now=now,
            scheduler_running=self.scheduler.running,
            last_complete_at=last_at,
            deadline=deadline,
        )

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """``/readyz``: the database schema is at the latest migration and the scheduler runs."""
        if not self._migrated:
            self._head = self._head or head_revision()
            self._migrated = self.store.revision() == self._head
        running = bool(self.scheduler.running)
        reasons = []
        if not self._migrated:
            reasons.append(
                "the database is not migrated to the latest revision "
                "(run `did-monitor db upgrade` or set database.auto_migrate = true)"
            )
        if not running:
            reasons.append("the scheduler is not running")
        ok = not reasons
        return ok, {
            "status": "ready" if ok else "not ready",
            "reasons": reasons,
            "database_migrated": self._migrated,
            "scheduler_running": running,
        }

    def _format(self, when: datetime | None) -> str:
        if when is None:
            return "never (the schedule has no future fire time)"
        local = when.astimezone(self.timezone)
        return f"at {local.isoformat(timespec='seconds')}"
