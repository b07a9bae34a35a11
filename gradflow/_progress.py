"""Progress of a run or a sweep on stderr: a bar on a terminal, plain log lines otherwise.

Every dynamics (``gf.flow``, its SDE, ``gf.sgd``) reports after each block of save intervals
(:mod:`gradflow.dynamics._blocks`: about every half second or every save, whichever is
longer) through :class:`Progress`; a sweep reports its points.

* stderr a terminal: a tqdm bar over the time span (``t``) or the points, with the steps, the
  rate and the ETA;
* stderr not a terminal (a batch job's log, a file): one plain line every
  :func:`interval` seconds (default 10; the environment variable
  ``GRADFLOW_PROGRESS_INTERVAL`` sets it, in seconds) of the form
  ``gradflow: flow: t = 12.5 of 40 (31%), 4,210 steps, 905 steps/s, ETA 0:00:30``, and a last
  line when the run ends if any line was printed.

The ETA extrapolates the rate measured since the first report of progress (the time before
it includes the compilation) to what is left; it is ``?`` until a second report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sys
import time

import diffrax
import numpy as np
from tqdm.auto import tqdm

#: The environment variable that sets the seconds between two plain progress lines.
ENV_INTERVAL = "GRADFLOW_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 10.0


def interval() -> float:
    """Seconds between two plain progress lines (``GRADFLOW_PROGRESS_INTERVAL``, default 10)."""
    text = os.environ.get(ENV_INTERVAL, "")
    try:
        value = float(text)
    except ValueError:
        return DEFAULT_INTERVAL
    return value if math.isfinite(value) and value >= 0 else DEFAULT_INTERVAL


def duration(seconds: float) -> str:
    """``h:mm:ss`` (``?`` when unknown)."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class Progress:
    """The progress of one run from ``start`` to ``end`` (flow time, or a count of points).

    ``update(done, steps=None)`` reports the position reached (``t`` or points done) and the
    steps taken so far; ``close()`` ends it. ``enabled=False`` makes every call a no-op.
    ``unit``: ``"t"`` (a time span) or a noun counted (``"point"``).
    """

    def __init__(
        self,
        desc: str,
        end: float,
        *,
        start: float = 0.0,
        unit: str = "t",
        enabled: bool = True,
        stream=None,
        every: float | None = None,
    ):
        self.desc, self.start, self.end, self.unit = desc, float(start), float(end), unit
        self.enabled = bool(enabled) and self.end > self.start
        self.stream = sys.stderr if stream is None else stream
        self.every = interval() if every is None else float(every)
        self.done, self.steps = self.start, None
        self.clock0 = time.monotonic()
        self._first = None  # (time, done) of the first report: the rate is measured from it
        self._last_line = self.clock0
        self._printed = False
        self._shown = None  # (done, steps) of the last line printed
        self._bar = None
        if self.enabled and _isatty(self.stream):
            counted = unit != "t"
            self._bar = tqdm(
                total=round(self.end - self.start) if counted else 1000,
                desc=desc,
                unit=unit if counted else "‰",
                file=self.stream,
                leave=False,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}{postfix}]"
                if not counted
                else None,
                dynamic_ncols=True,
            )

    # ---- reporting ----------------------------------------------------------------------
    def update(self, done: float, steps: int | None = None, note: str = "") -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        self.done, self.steps = max(float(done), self.done), steps  # never backwards
        if self._first is None and self.done > self.start:  # compilation is behind us
            self._first = (now, self.done, steps or 0)
        if self._bar is not None:
            self._update_bar(note)
        elif now - self._last_line >= self.every and (self.done, steps) != self._shown:
            self._line(now, note)

    def close(self) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._printed:
            now = time.monotonic()
            print(
                f"gradflow: {self.desc}: {self._position()}"
                + (f", {self.steps:,} steps" if self.steps is not None else "")
                + f", ended after {duration(now - self.clock0)}",
                file=self.stream,
                flush=True,
            )
        self.enabled = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # ---- what is shown ------------------------------------------------------------------
    def fraction(self) -> float:
        return min(max((self.done - self.start) / (self.end - self.start), 0.0), 1.0)

    def eta(self, now: float | None = None) -> float:
        """Seconds left at the rate measured since the first report of progress (the time
        before it includes the compilation); NaN (shown ``?``) before a second one."""
        now = time.monotonic() if now is None else now
        if self._first is None:
            return math.nan
        t_first, d_first, _ = self._first
        if not (self.done > d_first and now > t_first):
            return math.nan
        rate = (self.done - d_first) / (now - t_first)
        return (self.end - self.done) / rate

    def rate(self, now: float) -> str:
        """Steps per second since the first report ('' without steps)."""
        if self.steps is None or self._first is None:
            return ""
        t_first, _, s_first = self._first
        if now <= t_first or self.steps <= s_first:
            return ""
        rate = (self.steps - s_first) / (now - t_first)
        return f"{rate:,.0f} steps/s" if rate >= 100 else f"{rate:.3g} steps/s"

    def _position(self) -> str:
        if self.unit == "t":
            return f"t = {self.done:.4g} of {self.end:.4g} ({100 * self.fraction():.0f}%)"
        total, pct = self.end - self.start, 100 * self.fraction()
        done = f"{self.done:g}" if self.done == int(self.done) else f"{self.done:.1f}"
        return f"{done} of {total:g} {self.unit}s ({pct:.0f}%)"

    def _line(self, now: float, note: str = "") -> None:
        parts = [self._position()]
        if self.steps is not None:
            parts.append(f"{self.steps:,} steps")
        rate = self.rate(now)
        if rate:
            parts.append(rate)
        parts.append(f"ETA {duration(self.eta(now))}")
        if note:
            parts.append(note)
        print(f"gradflow: {self.desc}: " + ", ".join(parts), file=self.stream, flush=True)
        self._last_line = now
        self._printed = True
        self._shown = (self.done, self.steps)

    def _update_bar(self, note: str) -> None:
        bar = self._bar
        if self.unit == "t":
            bar.n = int(1000 * self.fraction())
            post = [f"t={self.done:.4g}/{self.end:.4g}"]
            if self.steps is not None:
                post.append(f"{self.steps:,} steps")
            rate = self.rate(time.monotonic())
            if rate:
                post.append(rate)
            post.append(f"ETA {duration(self.eta())}")
            if note:
                post.append(note)
            bar.set_postfix_str(", ".join(post), refresh=False)
        else:
            bar.n = int(self.done - self.start)
            if note:
                bar.set_postfix_str(note, refresh=False)
        bar.refresh()


def disabled() -> Progress:
    """A :class:`Progress` that shows nothing."""
    return Progress("", 1.0, enabled=False)


def for_run(progress, where: str, start: float, end: float) -> Progress:
    """The :class:`Progress` of a dynamics' ``progress=`` argument: ``False`` (nothing),
    ``True`` (named ``where``) or a string (the name shown)."""
    if not progress:
        return disabled()
    desc = progress if isinstance(progress, str) else where
    return Progress(desc, end, start=start)


# ---- inside a compiled (batched) solve: Diffrax's progress meter, read on the host ---------

_RECEIVERS: list = []


@contextlib.contextmanager
def receiving(receive):
    """Within this context, ``receive(f)`` gets the fraction ``f`` of the span done by the
    flows that run with :func:`batch_meter` (the slowest member of a batch)."""
    _RECEIVERS.append(receive)
    try:
        yield
    finally:
        _RECEIVERS.remove(receive)


def _tell(fraction: float) -> None:
    if _RECEIVERS:
        _RECEIVERS[-1](min(max(float(fraction), 0.0), 1.0))


class _BatchMeter(diffrax.TextProgressMeter):
    """Diffrax's text meter (its host callbacks, their ordering under vmap) with the printing
    replaced by a call of the current receiver (:func:`receiving`)."""

    @staticmethod
    def _init_bar():
        return [0.0]

    @staticmethod
    def _step_bar(bar, progress):
        bar[0] = float(np.asarray(progress).reshape(()))
        _tell(bar[0])

    @staticmethod
    def _close_bar(bar):
        _tell(1.0)


def batch_meter():
    """A ``diffrax.AbstractProgressMeter`` that hands the fraction done to :func:`receiving`
    (every percent; under ``vmap`` Diffrax's meter follows the slowest member)."""
    return _BatchMeter(minimum_increase=0.01)


def is_batch_meter(meter) -> bool:
    """Whether ``meter`` is a :func:`batch_meter` (a compiled call then reports to
    :func:`receiving` through :func:`tell_fraction`)."""
    return isinstance(meter, _BatchMeter)


def tell_fraction(fraction) -> None:
    """Host side of a compiled call's report: the fraction done, to :func:`receiving`."""
    _tell(float(np.asarray(fraction).reshape(())))


def with_batch_meter(plan):
    """``plan`` (of ``gf.flow``) with :func:`batch_meter` as its progress meter."""
    args = tuple(
        batch_meter() if isinstance(a, diffrax.AbstractProgressMeter) else a for a in plan.args
    )
    return dataclasses.replace(plan, args=args)


@contextlib.contextmanager
def solve_progress(progress, where: str, start: float, end: float):
    """Around ONE compiled solve whose meter is :func:`batch_meter` (a flow that cannot go in
    segments, the fixed-step SDE with save times closer than its step): its fraction done as
    the :class:`Progress` of ``progress=`` (the time reached; no step count)."""
    if not progress:
        yield
        return
    meter = for_run(progress, where, start, end)
    with receiving(lambda f: meter.update(start + f * (end - start))):
        try:
            yield
        finally:
            meter.close()


_SILENT = diffrax.NoProgressMeter()


def solve_meter(progress):
    """The Diffrax progress meter of a compiled solve: :func:`batch_meter` or none (one
    shared instance: a sweep plans many runs, and building an Equinox module costs ~20 µs)."""
    return batch_meter() if progress else _SILENT
