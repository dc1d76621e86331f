"""Progress bars: shown to a person at a terminal, silent in pipes, logs and with quiet."""
from __future__ import annotations

import io

from vecplug.progress import progress, shows_progress


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_a_terminal_gets_a_bar():
    stream = FakeTerminal()
    with progress(total=3, desc="embedding", unit="text", stream=stream) as bar:
        bar.update(3)
    assert "embedding" in stream.getvalue() and "3/3" in stream.getvalue()


def test_a_pipe_or_quiet_gets_nothing():
    pipe = io.StringIO()
    assert list(progress(range(5), stream=pipe)) == [0, 1, 2, 3, 4]
    assert pipe.getvalue() == ""
    terminal = FakeTerminal()
    with progress(total=2, stream=terminal, quiet=True) as bar:
        bar.update(2)
    assert terminal.getvalue() == ""
    assert not shows_progress(quiet=True, stream=terminal) and shows_progress(stream=terminal)
