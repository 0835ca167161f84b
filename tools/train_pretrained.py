"""Reproduce the pretrained sample model ``models/unet_alps_s2.keras`` (+ ``.json``).

    python -m tools.train_pretrained [--output runs/pretrained] [--no-copy]

1. prepares the Alps training scenes (notebook 01's step, for aletsch and fiescher only);
2. runs notebook 04 with its default parameters (the ``cpu`` preset);
3. copies ``model/unet.keras`` and ``model/unet.json`` to ``models/unet_alps_s2.*``.

Run from the repository root. Training is seeded; on another CPU (or TensorFlow build) the
weights can differ in the last bits, so the validation scores may differ slightly.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAME = "unet_alps_s2"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default=str(ROOT / "runs" / "pretrained"))
    parser.add_argument("--no-copy", action="store_true", help="do not overwrite models/")
    args = parser.parse_args()

    from glacierkit.data import split
    from glacierkit.prep import prepare_scenes
    from glacierkit.run import NOTEBOOK_DIR, execute_notebook

    out = Path(args.output).resolve()
    prepare_scenes(split("alps-s2")["train"], out)
    nb = execute_notebook(NOTEBOOK_DIR / "04_unet_training.ipynb",
                          out / "notebooks" / "04_unet_training.ipynb",
                          {"output_dir": str(out)}, cwd=NOTEBOOK_DIR)
    print(f"executed {nb}")
    if not args.no_copy:
        models = ROOT / "models"
        models.mkdir(exist_ok=True)
        for suffix in (".keras", ".json"):
            shutil.copyfile(out / "model" / f"unet{suffix}", models / f"{NAME}{suffix}")
            print(f"wrote {models / (NAME + suffix)}")


if __name__ == "__main__":
    main()
