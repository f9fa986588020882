"""Per-run capture: output and log records routed by context, never process-wide."""

from __future__ import annotations

import contextvars
import io
import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from programs._capture import RunCapture, capture_routing


@contextmanager
def routed() -> Iterator[io.StringIO]:
    """The routing installed over a fresh stdout (inside the test: pytest swaps sys.stdout
    between a test's phases); yields what reaches that stdout."""
    saved, console = sys.stdout, io.StringIO()
    sys.stdout = console
    try:
        capture_routing.acquire()
        try:
            yield console
        finally:
            capture_routing.release()
        assert sys.stdout is console  # taken out again, nothing left behind
    finally:
        sys.stdout = saved


def test_prints_go_to_the_capture_of_their_context() -> None:
    first = RunCapture(limit=1000, echo=False)
    second = RunCapture(limit=1000, echo=True)
    with routed() as console:
        print("before")
        with first.active():
            print("one")
            with second.active():
                print("two")
            sys.stdout.writelines(["three\n"])
        print("after")
    assert (first.output, second.output) == ("one\nthree\n", "two\n")
    assert console.getvalue() == "before\ntwo\nafter\n"  # the second echoes, the first not


def test_threads_see_the_capture_only_with_a_copied_context() -> None:
    capture = RunCapture(limit=1000, echo=False)
    with routed() as console, capture.active():
        context = contextvars.copy_context()
        copied = threading.Thread(target=context.run, args=(print, "copied"))
        plain = threading.Thread(target=print, args=("plain",))
        for thread in (copied, plain):
            thread.start()
            thread.join()
    assert capture.output == "copied\n"
    assert console.getvalue() == "plain\n"


def test_log_records_go_to_the_capture_at_its_level() -> None:
    capture = RunCapture(limit=1000, level=logging.INFO)
    log = logging.getLogger("tests.capture")
    log.setLevel(logging.DEBUG)
    try:
        with routed():
            log.warning("outside")
            with capture.active():
                log.debug("too low")
                log.info("kept %d", 1)
                try:
                    raise KeyError("x")
                except KeyError:
                    log.exception("with a traceback")
    finally:
        log.setLevel(logging.NOTSET)
    lines = capture.logs.splitlines()
    assert lines[0].endswith("INFO tests.capture: kept 1")
    assert lines[1].endswith("ERROR tests.capture: with a traceback")
    assert "KeyError: 'x'" in capture.logs
    assert "outside" not in capture.logs and "too low" not in capture.logs


def test_only_the_newest_text_is_kept() -> None:
    capture = RunCapture(limit=10, echo=False)
    with capture.active():
        capture.write_output("0123")
        capture.write_output("456789abc")
    assert capture.output == "[3 earlier characters dropped]\n3456789abc"


def test_a_replaced_stdout_is_routed_again_and_released_cleanly() -> None:
    saved, first, other = sys.stdout, io.StringIO(), io.StringIO()
    capture = RunCapture(limit=100, echo=False)
    sys.stdout = first
    try:
        capture_routing.acquire()
        sys.stdout = other  # replaced behind the routing's back (pytest does, between phases)
        capture_routing.ensure()  # what a run does when it starts
        with capture.active():
            print("captured")
        print("to the new stream")
        capture_routing.release()
        assert sys.stdout is other
    finally:
        sys.stdout = saved
    assert capture.output == "captured\n"
    assert other.getvalue() == "to the new stream\n"
    assert first.getvalue() == ""
