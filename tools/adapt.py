"""Adapt a pretrained model to Athabasca and score it on a part it was not adapted on.

    python -m tools.adapt [--model models/unet_alps_s2.keras] [--out runs/adapt]

Runs :func:`glacierkit.evaluate.adapt.adapt`: fine-tunes the model on the west 55 % of the
Athabasca scenes (all three dates, known-truth labels, unknown pixels ignored), trains the
same recipe from scratch on the same pixels, and scores both, the pretrained model and NDSI
at the threshold learned on the Alps train scenes on the east 45 % (16 px gap). Prints the
pooled and per-date tables and the run times, and writes them under ``--out``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(ROOT / "models" / "unet_alps_s2.keras"))
    parser.add_argument("--out", default=str(ROOT / "runs" / "adapt"))
    parser.add_argument("--ndsi-threshold", type=float, default=None,
                        help="NDSI threshold learned on the train scenes (default: learn it)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import pandas as pd

    from glacierkit.evaluate.adapt import adapt

    t = args.ndsi_threshold
    if t is None:
        from tools.recipes import learned_threshold, prepared

        t = learned_threshold(prepared(Path(args.out)))
    result = adapt(args.model, output_dir=args.out, ndsi_threshold=t)
    pd.set_option("display.width", 160)
    print(f"NDSI threshold learned on the Alps train scenes: {t}")
    print(f"split: {result.split}; seconds: {result.seconds}")
    print(result.pooled.round(3).to_string(index=False))
    print(result.table[["scene", "method", "KC", "MA", "FA", "rock_FA"]].round(3)
          .to_string(index=False))


if __name__ == "__main__":
    main()
