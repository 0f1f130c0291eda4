"""Execute the tutorials in place at full size, storing their outputs: ``python tutorials/execute.py [NAME...]``."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbclient
import nbformat

HERE = Path(__file__).parent

AVX2_KERNELS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
"""The CPU kernels the stored outputs were made with: AVX-512 kernels round differently and the trainings in
tutorials 3-5 then end elsewhere (set any of these yourself to override)."""


def main(names: list[str]) -> None:
    for name, value in AVX2_KERNELS.items():  # the kernel process inherits them
        os.environ.setdefault(name, value)
    paths = [HERE / n for n in names] if names else sorted(HERE.glob("*.ipynb"))
    for path in paths:
        t0 = time.perf_counter()
        nb = nbformat.read(path, as_version=4)
        nbclient.NotebookClient(nb, timeout=3600, kernel_name="python3",
                                resources={"metadata": {"path": str(HERE)}}).execute()
        nbformat.write(nb, path)
        print(f"{path.name}: executed in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
