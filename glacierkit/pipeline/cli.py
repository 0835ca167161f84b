"""The ``glacierkit`` command line.

    glacierkit run PIPELINE.yml [--name NAME] [--force] [--only STEP ...] [--set STEP.KEY=VALUE]
    glacierkit run PIPELINE.yml --scenes [SCENE ...] [--scenes-file LIST] [--cluster ADDRESS]
                                [--workers N] [--name NAME] [--force]
                                     # predict + evaluate many scenes (the file's batch:)
    glacierkit fetch-data            # put every sample file in the cache (for offline use)
    glacierkit params NOTEBOOK       # list a notebook's parameters
    glacierkit predict MODEL SCENE OUTDIR [--threshold 0.5] [--tta] [--precision P]
                                          [--batch-size 4] [--window N] [--outlines]
                                          [--force] [--sensor S] [--band-names A,B,..]
"""

from __future__ import annotations

import argparse
import logging
import sys

import yaml

from ..console import command_line_logging
from ..exceptions import GlacierKitError, ParameterError

__all__ = ["main"]


def _parse_sets(items: list[str]) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for item in items or []:
        if "=" not in item:
            raise ParameterError(f"--set {item!r}: use STEP.KEY=VALUE (or *.KEY=VALUE).")
        key, value = item.split("=", 1)
        step, _, param = key.rpartition(".")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ParameterError(
                f"--set {item!r}: the value is not valid YAML ({' '.join(str(exc).split())}). "
                "Quote text, e.g. --set 'STEP.KEY=\"[a\"'."
            ) from None
        out.setdefault(step or "*", {})[param] = parsed
    return out


def _cmd_run(args) -> int:
    from .config import read_scene_list
    from .run import run_batch, run_pipeline

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

    if not args.verbose:  # its shutdown notes ("Worker process still alive ...") are not ours
        logging.getLogger("distributed").setLevel(logging.ERROR)
    scenes = list(args.scenes or [])
    if args.scenes_file:
        scenes += read_scene_list(args.scenes_file)
    _, table = run_batch(args.pipeline, scenes or None, name=args.name, cluster=args.cluster,
                         workers=args.workers, force=args.force, progress=not args.quiet)
    return 1 if (table["error"].fillna("") != "").any() else 0


def _cmd_fetch(args) -> int:
    from ..data import samples as data

    for rel in data.registry():
        print(data.fetch(rel))
    data.fetch_product("landsat8-l2sp")
    return 0


def _cmd_params(args) -> int:
    from .notebooks import notebook_parameters

    for name, p in notebook_parameters(args.notebook).items():
        print(f"{name}: {p['type']} = {p['default']}  # {p['help']}")
    return 0


def _band_names(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise ParameterError(
            f"--band-names {text!r}: give one name per band, separated by commas, e.g. "
            "--band-names blue,green,red,nir,swir1,swir2."
        )
    return names


def _open_for_predict(args):
    """The scene, opened as predict_scene would (lazily by blocks of rows for a file),
    with the --sensor, --band-names, --scale/--offset and --baseline of the command line."""
    from pathlib import Path

    from ..io.scene import open_scene
    from ..unet.rows import BLOCK_ROWS

    kwargs = {"sensor": args.sensor, "band_names": _band_names(args.band_names)}
    extra = {k: getattr(args, k) for k in ("scale", "offset", "baseline")
             if getattr(args, k, None) is not None}
    kwargs.update(extra)
    path = Path(args.scene).expanduser()
    if path.exists():
        return open_scene(path, chunks={"band": 1, "y": BLOCK_ROWS, "x": -1}, **kwargs)
    return open_scene(args.scene, **kwargs)


def _cmd_predict(args) -> int:
    import warnings
    from pathlib import Path

    from ..exceptions import DomainShiftWarning
    from ..staging import check_target
    from ..unet.artifact import read_sidecar, resolve_model
    from ..unet.output import check_not_the_scene, predict_to_files

    if not 0 <= args.threshold <= 1:
        raise ParameterError(f"--threshold {args.threshold} must be a probability in [0, 1].")
    # Everything that can be checked is checked before the (long) prediction.
    check_target(args.outdir, args.prefix, overwrite=args.force, cli=True)
    check_not_the_scene(args.scene, Path(args.outdir), args.prefix)
    # The scene (opened lazily) and the model's file and sidecar before TensorFlow loads:
    # their errors come at once, not after seconds of start-up.
    scene = _open_for_predict(args)
    read_sidecar(args.model)
    pred = resolve_model(args.model, args.precision)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DomainShiftWarning)  # printed below, once
        written = predict_to_files(
            pred, scene, args.outdir, threshold=args.threshold, prefix=args.prefix,
            probability_dtype="float32" if args.float32 else "uint8", overwrite=args.force,
            outlines=args.outlines, min_area_km2=args.min_area_km2, simplify_m=args.simplify_m,
            window=args.window, overlap=args.overlap, batch_size=args.batch_size,
            tta=args.tta, progress=not args.quiet, context=args.context)
    _print_guard(written.probability.attrs.get("guard"))
    for kind, path in written.paths.items():
        print(f"{kind}: {Path(args.outdir) / Path(path).name}")
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
    parser = argparse.ArgumentParser(prog="glacierkit", description=__doc__.replace("``", ""),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run the notebook pipeline from a YAML file",
                       description="Run the notebooks of a pipeline file in order with "
                       "papermill, parameter names checked, completed steps skipped, into "
                       "runs/<name>/ (the executed notebooks, their kernel logs, figures, "
                       "tables and index.html); or, with --scenes, predict many scenes.")
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
    p = sub.add_parser("fetch-data", help="download every sample file into the cache",
                       description="Put every sample file (scenes, outlines, spectra) into "
                       "the user cache (~/.cache/glacierkit), from the local mirror named by "
                       "GLACIERKIT_DATA_DIR or from the pinned public sources, checked by "
                       "sha256, so the notebooks and tests then run offline. Prints each "
                       "file's path.")
    p.set_defaults(func=_cmd_fetch)
    p = sub.add_parser("params", help="list a notebook's parameters",
                       description="List the parameters of a notebook's 'parameters' cell: "
                       "name, type, default and comment, one per line; any of them can be "
                       "set with --set STEP.KEY=VALUE (glacierkit run) or papermill -p.")
    p.add_argument("notebook", help="the notebook, e.g. notebooks/01_data_prep.ipynb")
    p.set_defaults(func=_cmd_params)
    p = sub.add_parser("predict", help="predict a whole scene with a trained model; write COGs",
                       description="Predict glacier probability over a whole scene and write "
                       "probability.tif (uint8: value/250, 255 nodata), mask.tif (1 glacier, "
                       "0 not, 255 nodata) and, with --tta, confidence.tif to OUTDIR as "
                       "cloud-optimized GeoTIFFs.")
    p.add_argument("model", help="trained model (.keras, with its .json sidecar beside it)")
    p.add_argument("scene", help="scene: GeoTIFF, Landsat product folder, its _MTL.txt or "
                   ".tar/.tar.gz, or a sample name")
    p.add_argument("outdir", help="output folder")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="probability above which a pixel is glacier (default 0.5)")
    p.add_argument("--tta", action="store_true",
                   help="average the 8 flips/rotations and write confidence.tif (8x slower)")
    p.add_argument("--overlap", type=float, default=None,
                   help="window overlap in [0, 1) (default: twice the context plus a 16-px "
                   "blend: seam-free)")
    p.add_argument("--context", type=int, default=None,
                   help="pixels of context cut from each window edge (default: from the "
                   "model's receptive field)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="windows per forward pass (default: about 1 Mpx)")
    p.add_argument("--window", type=int, default=None,
                   help="largest window size in pixels (default: from the model's memory "
                   "needs; 1792 for the cpu preset in bfloat16, 1168 in float32)")
    p.add_argument("--precision", choices=["auto", "float32", "bfloat16"], default="auto",
                   help="compute precision (default auto: bfloat16 on CPUs with native "
                   "bfloat16, else float32)")
    p.add_argument("--prefix", default="",
                   help="prefix for the output file names (no path separators)")
    p.add_argument("--force", action="store_true",
                   help="replace the outputs of an earlier run in OUTDIR (the whole set: "
                   "probability, mask, confidence, outlines with this prefix)")
    p.add_argument("--sensor", default=None,
                   help="landsat8, landsat9, landsat7 or sentinel2, when the file does not "
                   "say (it must not contradict the file's metadata)")
    p.add_argument("--band-names", default=None, metavar="NAMES",
                   help="comma-separated names of the file's bands, in order, when the file "
                   "has no band descriptions: band names of --sensor (B2,B3,...) or roles "
                   "(blue,green,red,nir,swir1,swir2)")
    p.add_argument("--scale", type=float, default=None,
                   help="reflectance = DN * SCALE + OFFSET for integer files without a "
                   "sensor (e.g. 0.0001 for an Earth Engine export of Sentinel-2)")
    p.add_argument("--offset", type=float, default=None,
                   help="see --scale (default 0)")
    p.add_argument("--baseline", default=None,
                   help="Sentinel-2 processing baseline (e.g. 04.00: DN = 10000 * reflectance "
                   "+ 1000), when neither the file name nor its metadata say")
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
    with command_line_logging(logging.INFO if args.verbose else logging.WARNING):
        return _run(args)


def _run(args) -> int:
    """Run the command; errors become one line (:func:`_error`)."""
    try:
        return args.func(args)
    except GlacierKitError as exc:
        return _error(str(exc), args)
    except OSError as exc:  # the file system said no (permissions, full disk ...)
        where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        return _error(f"{exc.strerror or exc}:{where}. Check the path, its permissions and "
                      "the free space.", args)
    except KeyboardInterrupt:
        print("glacierkit: interrupted (partial outputs were not committed; run the same "
              "command again to resume)", file=sys.stderr)
        return 130


def _error(message: str, args) -> int:
    """One line on stderr (the traceback only with --verbose), exit status 2."""
    if getattr(args, "verbose", False):
        logging.getLogger(__name__).exception("details")
    one_line = " ".join(message.split())
    print(f"glacierkit: error: {one_line}", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
