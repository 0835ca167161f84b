"""The ``glacierkit`` command line.

    glacierkit run PIPELINE.yml [--name NAME] [--force] [--only STEP ...] [--set STEP.KEY=VALUE]
    glacierkit run PIPELINE.yml --scenes [SCENE ...] [--scenes-file LIST] [--cluster ADDRESS]
                                [--workers N] [--name NAME] [--force]
                                     # predict + evaluate many scenes (the file's batch:)
    glacierkit fetch-data            # put every sample file in the cache (for offline use)
    glacierkit params NOTEBOOK       # list a notebook's parameters
    glacierkit predict MODEL SCENE OUTDIR [--threshold 0.5] [--tta] [--overlap 0.5]
                                          [--batch-size 4] [--window N] [--outlines]
"""

from __future__ import annotations

import argparse
import logging
import sys

import yaml

from .exceptions import GlacierKitError, ParameterError

__all__ = ["main"]


def _parse_sets(items: list[str]) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for item in items or []:
        if "=" not in item:
            raise ParameterError(f"--set {item!r}: use STEP.KEY=VALUE (or *.KEY=VALUE).")
        key, value = item.split("=", 1)
        step, _, param = key.rpartition(".")
        out.setdefault(step or "*", {})[param] = yaml.safe_load(value)
    return out


def _cmd_run(args) -> int:
    from .run import read_scene_list, run_batch, run_pipeline

    batch = args.scenes is not None or args.scenes_file is not None
    if not batch:
        if args.cluster or args.workers is not None:
            raise ParameterError("--cluster and --workers go with --scenes (the batch mode).")
        run_pipeline(args.pipeline, name=args.name, force=args.force, only=args.only,
                     overrides=_parse_sets(args.set))
        return 0
    if args.only or args.set:
        raise ParameterError(
            "--only and --set apply to the notebook steps; with --scenes the batch: section of "
            "the pipeline file sets the options."
        )
    if args.workers is not None and args.workers < 1:
        raise ParameterError(f"--workers {args.workers}: give a positive number of processes.")
    import distributed  # noqa: F401 - importing it sets its loggers to INFO; quieten them

    if not args.verbose:
        logging.getLogger("distributed").setLevel(logging.WARNING)
    scenes = list(args.scenes or [])
    if args.scenes_file:
        scenes += read_scene_list(args.scenes_file)
    _, table = run_batch(args.pipeline, scenes or None, name=args.name, cluster=args.cluster,
                         workers=args.workers, force=args.force, progress=not args.quiet)
    return 1 if (table["error"].fillna("") != "").any() else 0


def _cmd_fetch(args) -> int:
    from . import data

    for rel in data.registry():
        print(data.fetch(rel))
    data.fetch_product("landsat8-l2sp")
    return 0


def _cmd_params(args) -> int:
    from .run import notebook_parameters

    for name, p in notebook_parameters(args.notebook).items():
        print(f"{name}: {p['type']} = {p['default']}  # {p['help']}")
    return 0


def _cmd_predict(args) -> int:
    from .predict import predict_scene, write_prediction

    if not 0 <= args.threshold <= 1:
        raise ParameterError(f"--threshold {args.threshold} must be a probability in [0, 1].")
    import warnings

    from .guard import DomainShiftWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DomainShiftWarning)  # printed below, once
        prob = predict_scene(args.model, args.scene, window=args.window, overlap=args.overlap,
                             batch_size=args.batch_size, tta=args.tta,
                             progress=not args.quiet)
    _print_guard(prob.attrs.get("guard"))
    paths = write_prediction(prob, args.outdir, threshold=args.threshold, prefix=args.prefix,
                             probability_dtype="float32" if args.float32 else "uint8")
    if args.outlines:
        from .vectorize import mask_to_polygons, write_outlines

        polygons = mask_to_polygons(prob, threshold=args.threshold, min_area_km2=args.min_area_km2,
                                    simplify_m=args.simplify_m)
        paths["outlines"] = write_outlines(polygons,
                                           f"{args.outdir}/{args.prefix}outlines.gpkg")
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


def _print_guard(report) -> None:
    """One line per domain-shift guard finding (stderr), or one line saying all is well."""
    if not report:
        return
    if report.get("warnings"):
        for text in report["warnings"]:
            print(f"glacierkit: warning: domain shift: {text}", file=sys.stderr)
        print("glacierkit: warning: the scene differs from the model's training data; check "
              "the map or adapt the model (README: Map a new region).", file=sys.stderr)
    else:
        print("domain-shift guard: the scene lies within the model's training domain")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glacierkit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run the notebook pipeline from a YAML file")
    p.add_argument("pipeline", help="pipeline YAML file (e.g. pipelines/sample.yml)")
    p.add_argument("--name", help="run name: outputs go to runs/<name>/")
    p.add_argument("--force", action="store_true", help="re-run steps that already completed")
    p.add_argument("--only", nargs="+", metavar="STEP", help="run only these steps")
    p.add_argument("--set", action="append", metavar="STEP.KEY=VALUE",
                   help="override a parameter (STEP may be * for all steps)")
    g = p.add_argument_group(
        "many scenes", "Predict (and evaluate where reference outlines exist) many scenes with "
        "the model of the file's batch: section, one Dask task per scene, instead of running "
        "the notebooks. Outputs: runs/<name>/scenes/<scene>/, scenes.csv, scenes_summary.md. "
        "Done scenes are skipped (--force redoes them); exit status 1 if a scene failed.")
    g.add_argument("--scenes", nargs="*", metavar="SCENE",
                   help="scene names or paths (none: the batch section's scenes:)")
    g.add_argument("--scenes-file", metavar="LIST",
                   help="text file with one scene per line (# comments allowed)")
    g.add_argument("--cluster", metavar="ADDRESS",
                   help="Dask scheduler address, e.g. tcp://10.0.0.5:8786 (default: a local "
                   "cluster on this machine)")
    g.add_argument("--workers", type=int, metavar="N",
                   help="worker processes of the local cluster (default 2)")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_run)
    p = sub.add_parser("fetch-data", help="download every sample file into the cache")
    p.set_defaults(func=_cmd_fetch)
    p = sub.add_parser("params", help="list a notebook's parameters")
    p.add_argument("notebook")
    p.set_defaults(func=_cmd_params)
    p = sub.add_parser("predict", help="predict a whole scene with a trained model; write COGs",
                       description="Predict glacier probability over a whole scene and write "
                       "probability.tif (uint8: value/250, 255 nodata), mask.tif (1 glacier, "
                       "0 not, 255 nodata) and, with --tta, confidence.tif to OUTDIR as "
                       "cloud-optimized GeoTIFFs.")
    p.add_argument("model", help="trained model (.keras, with its .json sidecar beside it)")
    p.add_argument("scene", help="scene: GeoTIFF, Landsat product folder/_MTL.txt or sample name")
    p.add_argument("outdir", help="output folder")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="probability above which a pixel is glacier (default 0.5)")
    p.add_argument("--tta", action="store_true",
                   help="average the 8 flips/rotations and write confidence.tif (8x slower)")
    p.add_argument("--overlap", type=float, default=0.5,
                   help="window overlap in [0, 1) (default 0.5: seam-free)")
    p.add_argument("--batch-size", type=int, default=4, help="windows per forward pass")
    p.add_argument("--window", type=int, default=None,
                   help="window size in pixels (default: training patch size, at least 256)")
    p.add_argument("--prefix", default="", help="prefix for the output file names")
    p.add_argument("--float32", action="store_true",
                   help="write the probability as float32 instead of uint8")
    p.add_argument("--outlines", action="store_true",
                   help="also write outlines.gpkg (polygons of the mask with area_km2)")
    p.add_argument("--min-area-km2", type=float, default=0.01,
                   help="smallest outline kept with --outlines (default 0.01 km2)")
    p.add_argument("--simplify-m", type=float, default=None,
                   help="simplify outlines with this tolerance in metres")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_predict)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except GlacierKitError as exc:
        print(f"glacierkit: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
