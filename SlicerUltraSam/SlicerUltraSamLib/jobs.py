"""Work off the GUI thread, one job at a time, never waited for.

Encoding, propagation and downloads take seconds to minutes, so the widget runs them on a worker
thread. Slicer's GUI thread must never block on one: ``join()`` there freezes the application, and
a join that times out leaves the old worker running beside a new one. So the :class:`JobRunner`
holds at most one job; cancelling only raises the job's stop flag; the GUI polls (a QTimer calls
:meth:`JobRunner.poll`) and gets the job's progress and, once it has really stopped, its result.
What the user asks for while a job winds down is kept with :meth:`JobRunner.then` (the latest
request replaces an earlier one) and runs from the poll that sees the job end. A job may also hand
over partial results as it goes (:meth:`Job.publish`: a propagation's finished slices), which the
poll delivers on the GUI thread, in order and before the job's end, to the job's ``on_item``. No Qt
here: the same runner is driven by plain polling in the tests.
"""

from __future__ import annotations

import enum
import queue
import threading
import traceback
from dataclasses import dataclass
from typing import Callable

__all__ = ["JobKind", "Job", "JobEvent", "JobRunner"]


class JobKind(enum.Enum):
    """What a job does, which decides how the GUI treats it (never its display text).

    ``foreground``: the user waits for it (progress bar, Cancel); otherwise it yields to the user.
    ``keeps_result``: a result that arrives after Cancel is still delivered (a propagation's
    outcome, marked cancelled, so the widget can undo the slices it showed; a download, which cannot
    stop halfway); otherwise it is dropped (an encoding's follow-up).
    """

    PRECOMPUTE = ("Precomputing embeddings", False, False)
    ENCODE = ("Encoding the image", True, False)
    PROPAGATE = ("Propagating", True, True)
    DOWNLOAD = ("Downloading weights", True, True)

    def __init__(self, label: str, foreground: bool, keeps_result: bool) -> None:
        self.label = label
        self.foreground = foreground
        self.keeps_result = keeps_result


@dataclass(frozen=True)
class JobEvent:
    """One message from a job: progress ``(done, total)``, a published ``item``, or its end (result or error)."""

    progress: tuple[int, int] | None = None
    result: object = None
    error: BaseException | None = None
    details: str = ""
    item: object = None
    has_item: bool = False

    @property
    def finished(self) -> bool:
        return self.progress is None and not self.has_item


class Job:
    """One function run on a daemon thread; ``work(job)`` may call :meth:`progress` and :meth:`publish`
    and poll :meth:`should_stop`."""

    def __init__(
        self,
        kind: JobKind,
        work: Callable[["Job"], object],
        on_done: Callable[[object], None] | None,
        on_item: Callable[[object], None] | None = None,
    ) -> None:
        self.kind = kind
        self.on_done = on_done
        self.on_item = on_item
        self.abandoned = False  # its result is to be dropped, not applied (scene closed, model changed)
        self._work = work
        self._stop = threading.Event()
        self._messages: "queue.Queue[JobEvent]" = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=f"SlicerUltraSam {kind.name.lower()}", daemon=True)

    def progress(self, done: int, total: int) -> None:
        self._messages.put(JobEvent(progress=(done, total)))

    def publish(self, item: object) -> None:
        """Hand ``item`` to the GUI thread (any thread may call this): the poll gives it to ``on_item``."""
        self._messages.put(JobEvent(item=item, has_item=True))

    def should_stop(self) -> bool:
        return self._stop.is_set()

    def _run(self) -> None:
        try:
            self._messages.put(JobEvent(result=self._work(self)))
        except Exception as exc:  # reported on the GUI thread by poll()
            self._messages.put(JobEvent(error=exc, details=traceback.format_exc()))


class JobRunner:
    """At most one :class:`Job` at a time (see the module docstring)."""

    def __init__(self) -> None:
        self.current: Job | None = None
        self._pending: Callable[[], None] | None = None

    def start(
        self,
        kind: JobKind,
        work: Callable[[Job], object],
        on_done: Callable[[object], None] | None = None,
        on_item: Callable[[object], None] | None = None,
    ) -> Job | None:
        """Start a job, or return None while another one has not finished: never two at once.

        ``on_item`` receives, on the polling thread, what the job publishes (:meth:`Job.publish`).
        """
        if self.current is not None:
            return None
        self.current = Job(kind, work, on_done, on_item)
        self.current._thread.start()
        return self.current

    def busy(self, foreground_only: bool = False) -> bool:
        """A job has not finished (``foreground_only``: one the user is waiting for)."""
        return self.current is not None and (self.current.kind.foreground or not foreground_only)

    def cancel(self, abandon: bool = False) -> None:
        """Ask the job to stop at its next check; returns at once. With ``abandon`` its result is dropped."""
        if self.current is not None:
            self.current._stop.set()
            self.current.abandoned = self.current.abandoned or abandon

    def then(self, action: Callable[[], None]) -> None:
        """Run ``action`` from the poll that sees the current job end (at once when there is none).

        One action waits at most: a newer request replaces an older one, so three impatient clicks
        run one segmentation, not three.
        """
        if self.current is None:
            action()
        else:
            self._pending = action

    def poll(
        self,
        on_progress: Callable[[Job, int, int], None] | None = None,
        on_end: Callable[[Job], None] | None = None,
        on_error: Callable[[Job, BaseException, str], None] | None = None,
    ) -> None:
        """Deliver the job's news without waiting (the GUI calls this from a timer).

        Progress goes to ``on_progress``; published items go, in order, to the job's ``on_item``
        (unless it was abandoned). When the job has ended the runner is free again, then
        ``on_end(job)`` runs, then its error goes to ``on_error`` or its result to the job's
        ``on_done`` (unless it was abandoned, or cancelled and its kind does not keep results), and
        finally the :meth:`then` action runs, unless one of those started another job.
        """
        job = self.current
        while job is not None:
            try:
                event = job._messages.get_nowait()
            except queue.Empty:
                return
            if event.has_item:
                if job.on_item is not None and not job.abandoned:
                    job.on_item(event.item)
                continue
            if not event.finished:
                if on_progress is not None:
                    on_progress(job, *event.progress)
                continue
            self.current = None
            if on_end is not None:
                on_end(job)
            if event.error is not None:
                if on_error is not None:
                    on_error(job, event.error, event.details)
            elif job.on_done is not None and not job.abandoned and (job.kind.keeps_result or not job.should_stop()):
                job.on_done(event.result)
            pending, self._pending = self._pending, None
            if pending is not None:
                self.then(pending)
            return

    def forget_pending(self) -> None:
        """Drop the action waiting in :meth:`then` (e.g. when the scene closes)."""
        self._pending = None
