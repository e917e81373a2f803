"""Starting child processes that a test stops with Ctrl-C (SIGINT), among them
``promptsearch serve``."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading

import pytest


def default_sigint() -> None:
    """Run in the child before it starts (``preexec_fn``): SIGINT back to its default.

    A shell without job control starts background commands with SIGINT ignored, and
    children inherit that: Python then installs no KeyboardInterrupt handler and a
    Ctrl-C sent by the test does nothing.  A suite started that way (``... &`` in a
    script) must still see its children stop on Ctrl-C as they do from a terminal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_serve(arguments: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """``promptsearch serve ARGUMENTS`` as a child process, its output piped, Ctrl-C on."""
    return subprocess.Popen(
        [sys.executable, "-m", "promptsearch.cli", "serve", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=default_sigint,
    )


def first_line(process: subprocess.Popen[str], timeout: float) -> str:
    """The first line *process* prints, or a test failure after *timeout* seconds."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(
        target=lambda: lines.put(process.stdout.readline() if process.stdout else ""),
        daemon=True,
    ).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        pytest.fail(f"promptsearch serve did not start within {timeout:.0f} s")


def stop(process: subprocess.Popen[str], timeout: float) -> None:
    """Ctrl-C, then a kill if *process* has not stopped within *timeout* seconds."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
