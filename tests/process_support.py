"""Starting child processes that a test stops with Ctrl-C (SIGINT)."""

from __future__ import annotations

import signal


def default_sigint() -> None:
    """Run in the child before it starts (``preexec_fn``): SIGINT back to its default.

    A shell without job control starts background commands with SIGINT ignored, and
    children inherit that: Python then installs no KeyboardInterrupt handler and a
    Ctrl-C sent by the test does nothing.  A suite started that way (``... &`` in a
    script) must still see its children stop on Ctrl-C as they do from a terminal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
