"""Reproduce the pretrained sample model ``models/unet_alps_s2.keras`` (+ ``.json``).

    python -m tools.train_pretrained [--output runs/pretrained] [--seeds 42 7 123] [--no-copy]

1. prepares the Alps training scenes and the glacier-free Landsat 8 crop (notebook 01's
   step);
2. runs notebook 04 with its default parameters (the committed recipe, see
   ``models/README.md``) once per seed, into ``<output>/seed-<n>/``;
3. averages the seeds' models into one (:func:`glacierkit.unet.train.save_ensemble`), scores it
   on the same validation blocks, and copies it to ``models/unet_alps_s2.*``.

About 6-7 minutes per seed on 2 CPU cores. Run from the repository root. Training is
seeded; on another CPU (or TensorFlow build) the weights can differ in the last bits, so
the scores may differ slightly.
"""

from __future__ import annotations

import argparse
import ast
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAME = "unet_alps_s2"
SEEDS = (42, 7, 123)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default=str(ROOT / "runs" / "pretrained"))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--no-copy", action="store_true", help="do not overwrite models/")
    args = parser.parse_args()

    from glacierkit.data import split
    from glacierkit.pipeline import NOTEBOOK_DIR, execute_notebook, notebook_parameters
    from glacierkit.prep import prepare_scenes
    from glacierkit.unet import save_ensemble

    out = Path(args.output).resolve()
    defaults = notebook_parameters(NOTEBOOK_DIR / "04_unet_training.ipynb")
    scenes = split("alps-s2")["train"]
    glacier_free = list(ast.literal_eval(defaults["glacier_free"]["default"]))
    prepare_scenes([*scenes, *glacier_free], out)
    members = []
    for seed in args.seeds:
        run = out / f"seed-{seed}"
        (run / "prepared").mkdir(parents=True, exist_ok=True)
        link = run / "prepared"
        if not any(link.iterdir()):  # share the prepared scenes
            link.rmdir()
            link.symlink_to(out / "prepared")
        nb = execute_notebook(NOTEBOOK_DIR / "04_unet_training.ipynb",
                              run / "notebooks" / "04_unet_training.ipynb",
                              {"output_dir": str(run), "seed": seed}, cwd=ROOT)
        print(f"executed {nb}")
        members.append(run / "model" / "unet.keras")
    target = out / "model" / "unet.keras"
    if len(members) > 1:
        save_ensemble(members, target, scenes, out, glacier_free=glacier_free)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        for suffix in (".keras", ".json"):
            shutil.copyfile(members[0].with_suffix(suffix), target.with_suffix(suffix))
    print(f"wrote {target}")
    if not args.no_copy:
        models = ROOT / "models"
        models.mkdir(exist_ok=True)
        for suffix in (".keras", ".json"):
            shutil.copyfile(target.with_suffix(suffix), models / f"{NAME}{suffix}")
            print(f"wrote {models / (NAME + suffix)}")


if __name__ == "__main__":
    main()
