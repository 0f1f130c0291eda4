"""The README's first command: ``python -m latentmcmc`` on built-in defaults."""

import subprocess
import sys

from latentmcmc.__main__ import main


def test_demo_runs_and_refines(capsys):
    assert main(["--chains", "300", "--steps", "60", "--warmup", "60", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "acceptance" in out and "ESS bulk" in out and "R-hat" in out
    line = next(x for x in out.splitlines() if "high-quality fraction" in x)
    before, after = (float(v) for v in line.replace("->", " ").split()[-3::2])
    assert after > before


def test_entry_point_reports_errors_in_one_line():
    proc = subprocess.run([sys.executable, "-m", "latentmcmc", "--chains", "0", "--quiet"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and "Traceback" not in proc.stderr
