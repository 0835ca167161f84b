"""Stop the set-up early when the disk is too full for the virtual environment.

``python tools/free_space.py VENV MIN_FREE_GB`` (the Makefile runs it before pip, with the
system Python, so only the standard library): exit 0 when the folder that will hold VENV
has at least MIN_FREE_GB gigabytes free, else one line naming the folder, its free space
and the fix. ``MIN_FREE_GB=0`` skips the check.
"""

import shutil
import sys
from pathlib import Path


def main(venv: str, min_free_gb: str) -> int | str:
    try:
        need = float(min_free_gb)
    except ValueError:
        return (f"error: MIN_FREE_GB={min_free_gb!r} is not a number of gigabytes (e.g. 5; "
                "0 skips the check).")
    folder = Path(venv).absolute()
    while not folder.is_dir():  # the first folder that exists on the way up
        folder = folder.parent
    free = shutil.disk_usage(folder).free / 1e9
    if free >= need:
        return 0
    return (f"error: setting up {venv} needs about {need:g} GB free (the environment takes "
            f"about 4 GB), but {folder} has {free:.1f} GB free. Free some space there, or put "
            "the environment elsewhere with VENV=/path/with/space (MIN_FREE_GB=0 skips this "
            "check).")


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
