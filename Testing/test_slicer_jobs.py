"""The module's job runner: one worker at a time, never waited for on the GUI thread.

The widget drives ``SlicerUltraSamLib.jobs.JobRunner`` from a QTimer; here plain polling plays the
timer. Jobs block on events the test controls, so every state (running, cancelled, finished) is
reached on purpose, not by timing luck.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "SlicerUltraSam"))

from SlicerUltraSamLib.jobs import JobKind, JobRunner  # noqa: E402

TIMEOUT_S = 10.0


class Recorder:
    """The widget's side of :meth:`JobRunner.poll`: what it was told, in order."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def progress(self, job, done, total):
        self.events.append(("progress", done, total))

    def end(self, job):
        self.events.append(("end", job.kind))

    def error(self, job, exc, details):
        self.events.append(("error", str(exc), "Traceback" in details))

    def done(self, result):
        self.events.append(("done", result))


def poll_until_idle(runner: JobRunner, recorder: Recorder) -> None:
    """Poll as the widget's timer does until no job is left (or fail after TIMEOUT_S)."""
    deadline = time.monotonic() + TIMEOUT_S
    while runner.busy():
        assert time.monotonic() < deadline, "the job never finished"
        runner.poll(recorder.progress, recorder.end, recorder.error)
        time.sleep(0.005)


def stoppable(release: threading.Event, result="result"):
    """A job that reports progress, then waits for ``release`` or its stop flag, and returns ``result``."""

    def work(job):
        job.progress(1, 3)
        while not (release.is_set() or job.should_stop()):
            time.sleep(0.001)
        return result if not job.should_stop() else f"partial {result}"

    return work


def test_one_job_at_a_time_and_its_result_arrives_by_polling():
    runner, recorder, release = JobRunner(), Recorder(), threading.Event()
    job = runner.start(JobKind.PROPAGATE, stoppable(release), recorder.done)
    assert job is not None and runner.busy() and runner.busy(foreground_only=True)
    assert runner.start(JobKind.PRECOMPUTE, stoppable(threading.Event())) is None  # never two workers
    runner.poll(recorder.progress, recorder.end, recorder.error)
    release.set()
    poll_until_idle(runner, recorder)
    assert recorder.events == [("progress", 1, 3), ("end", JobKind.PROPAGATE), ("done", "result")]
    assert runner.start(JobKind.ENCODE, lambda job: 1) is not None  # free again


def test_cancel_returns_at_once_and_the_kind_decides_what_happens_to_the_result():
    for kind, expected in ((JobKind.PROPAGATE, [("done", "partial result")]), (JobKind.ENCODE, [])):
        runner, recorder = JobRunner(), Recorder()
        runner.start(kind, stoppable(threading.Event()), recorder.done)
        started = time.monotonic()
        runner.cancel()
        assert time.monotonic() - started < 0.05  # no join on the GUI thread
        poll_until_idle(runner, recorder)
        assert [e for e in recorder.events if e[0] == "done"] == expected, kind


def test_an_abandoned_job_delivers_nothing_and_errors_are_reported():
    runner, recorder = JobRunner(), Recorder()
    runner.start(JobKind.PROPAGATE, stoppable(threading.Event()), recorder.done)
    runner.cancel(abandon=True)
    poll_until_idle(runner, recorder)
    assert ("done", "partial result") not in recorder.events

    def fails(job):
        raise ValueError("no GPU memory left")

    runner.start(JobKind.ENCODE, fails, recorder.done)
    poll_until_idle(runner, recorder)
    assert recorder.events[-2:] == [("end", JobKind.ENCODE), ("error", "no GPU memory left", True)]


def test_a_request_made_while_a_job_winds_down_runs_once_after_it():
    runner, recorder, release = JobRunner(), Recorder(), threading.Event()
    ran = []
    runner.then(lambda: ran.append("now"))  # no job: at once
    runner.start(JobKind.PRECOMPUTE, stoppable(release))
    for click in range(3):  # impatient clicks: the latest request wins, it runs once
        runner.then(lambda click=click: ran.append(click))
    runner.poll()
    assert ran == ["now"]
    runner.cancel()
    poll_until_idle(runner, recorder)
    assert ran == ["now", 2]

    runner.start(JobKind.PRECOMPUTE, stoppable(threading.Event()))
    runner.then(lambda: ran.append("forgotten"))
    runner.forget_pending()
    runner.cancel(abandon=True)
    poll_until_idle(runner, recorder)
    assert ran == ["now", 2]


def test_a_request_that_starts_a_job_keeps_later_requests_waiting():
    runner, recorder = JobRunner(), Recorder()
    runner.start(
        JobKind.ENCODE,
        lambda job: "encoded",
        lambda _: runner.start(JobKind.PROPAGATE, lambda job: "propagated", recorder.done),
    )
    runner.then(lambda: recorder.events.append(("after", runner.busy())))
    poll_until_idle(runner, recorder)
    assert recorder.events[-2:] == [("done", "propagated"), ("after", False)]


@pytest.mark.parametrize("kind", list(JobKind))
def test_every_kind_says_how_the_gui_treats_it(kind):
    assert kind.label and isinstance(kind.foreground, bool) and isinstance(kind.keeps_result, bool)
    assert kind.foreground == (kind is not JobKind.PRECOMPUTE)  # only the background precompute yields
