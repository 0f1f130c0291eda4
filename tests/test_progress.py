"""Progress: a bar when asked for or on a terminal, a line every tenth of the run in a log, nothing when off."""

import io
import sys

from latentmcmc.progress import ProgressLines, progress_bar


def test_bar_when_asked_or_on_a_terminal_and_lines_in_a_log(monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)  # not a terminal: a job's log
    assert progress_bar(5, False, "x") is None
    lines = progress_bar(20, None, "train x")
    assert isinstance(lines, ProgressLines)
    for step in range(20):
        lines.set_postfix(loss=f"{step:.1f}")
        lines.update(1)
    text = log.getvalue().splitlines()
    assert len(text) == 10 and text[0].startswith("train x: 10% (2/20 steps)") and text[-1].endswith("loss=19.0")
    bar = progress_bar(5, True, "x", initial=2)
    assert bar is not None and bar.n == 2 and bar.total == 5
    bar.close()
