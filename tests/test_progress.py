"""Progress bars: shown when asked for or on a terminal, absent otherwise."""

import io
import sys

from latentmcmc.progress import progress_bar


def test_bar_only_when_asked_or_on_a_terminal(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal
    assert progress_bar(5, False, "x") is None
    assert progress_bar(5, None, "x") is None
    bar = progress_bar(5, True, "x", initial=2)
    assert bar is not None and bar.n == 2 and bar.total == 5
    bar.close()
