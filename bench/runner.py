"""Runner overhead per notebook: kernel start + papermill, measured on a trivial notebook.

    python bench/runner.py [--repeats 5]

Target (issue 5): under 10 s per notebook. Last line: ``runner_overhead_s: <median>``.
The same trivial cell run in this process takes microseconds, so the whole wall time of
executing the notebook is overhead.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jupytext

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from glacierkit.pipeline import execute_notebook


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        nb = Path(tmp) / "trivial.ipynb"
        trivial = jupytext.reads('# %% tags=["parameters"]\noutput_dir: str = "."  # where to write\n'
                                 "\n# %%\nx = 1 + 1\n", fmt="py:percent")
        trivial.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                          "language": "python"}
        jupytext.write(trivial, str(nb))
        times = []
        for i in range(args.repeats):
            t0 = time.perf_counter()
            execute_notebook(nb, Path(tmp) / f"out{i}.ipynb", {"output_dir": tmp})
            times.append(time.perf_counter() - t0)
            print(f"run {i}: {times[-1]:.2f} s", flush=True)
    print(f"median of {args.repeats}: {statistics.median(times):.2f} s "
          f"(min {min(times):.2f}, max {max(times):.2f})")
    print(f"runner_overhead_s: {statistics.median(times):.2f}")


if __name__ == "__main__":
    main()
