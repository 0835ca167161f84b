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
                                          [--clouds QA_PIXEL|SCL|none] [--glaciers OUTLINES]
    glacierkit predict MODEL OUTDIR --stac ITEM_URL_OR_ID [--api URL] [--glaciers OUTLINES]
    glacierkit search (--glaciers OUTLINES [--rgi-ids ID,..] | --bbox W,S,E,N) [--api URL]
                      [--dates A/B] [--max-cloud PCT] [--collections C ..] [--json FILE]
                      [--predict MODEL OUTDIR [--top N]]
                                     # find scenes of glaciers, clearest view first
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

    level = getattr(args, "level", None)
    if args.stac:
        from ..io.stac import open_item

        item = open_item(args.stac, api=args.api, outlines=args.glaciers,
                         clouds=_clouds(args), chunks={"x": 2048, "y": BLOCK_ROWS})
        return open_scene(item, level=level, clouds=False)  # the level, as for any scene
    kwargs = {"sensor": args.sensor, "band_names": _band_names(args.band_names),
              "clouds": _clouds(args)}
    extra = {k: getattr(args, k) for k in ("scale", "offset", "baseline", "level")
             if getattr(args, k, None) is not None}
    kwargs.update(extra)
    path = Path(args.scene).expanduser()
    if path.exists():
        scene = open_scene(path, chunks={"band": 1, "y": BLOCK_ROWS, "x": -1}, **kwargs)
    else:
        scene = open_scene(args.scene, **kwargs)
    return _glacier_share(scene, args.glaciers)


def _clouds(args):
    """open_scene's ``clouds``: the product's own layer (default), none, or a given file."""
    text = getattr(args, "clouds", None)
    if text is None or text == "auto":
        return True
    if text == "none":
        return False
    if getattr(args, "cloud_kind", None):
        from ..io.raster import open_raster

        layer = open_raster(text)
        layer.attrs.update(cloud_kind=args.cloud_kind, cloud_layer=text)
        return layer
    return text


def _glacier_share(scene, glaciers):
    """With --glaciers, record the obscured share of their area (and warn above the limit)."""
    if not glaciers:
        return scene
    from ..io.clouds import obscured_glacier_fraction, warn_obscured

    share = obscured_glacier_fraction(scene, glaciers)
    scene.attrs["obscured_glacier_fraction"] = round(share, 4)
    warn_obscured(share, scene.attrs.get("scene_id", "the scene"))
    return scene


def _cmd_predict(args) -> int:
    import dask
    import dask.threaded

    # A fresh command has no distributed client: handing dask its local (default) threaded
    # scheduler spares it importing distributed to look for one (a fifth of a second).
    with dask.config.set(scheduler=dask.threaded.get):
        return _predict(args)


def _predict(args) -> int:
    import warnings
    from pathlib import Path

    from ..exceptions import DomainShiftWarning, ObscuredWarning
    from ..staging import check_target
    from ..unet.artifact import read_sidecar, resolve_model
    from ..unet.output import check_not_the_scene, predict_to_files

    if not 0 <= args.threshold <= 1:
        raise ParameterError(f"--threshold {args.threshold} must be a probability in [0, 1].")
    if bool(args.stac) == bool(args.scene):
        raise ParameterError(
            "Give either a SCENE (glacierkit predict MODEL SCENE OUTDIR) or --stac ITEM "
            "(glacierkit predict MODEL OUTDIR --stac ITEM_URL_OR_ID), not both or neither."
        )
    # Everything that can be checked is checked before the (long) prediction.
    check_target(args.outdir, args.prefix, overwrite=args.force, cli=True)
    if args.scene:
        check_not_the_scene(args.scene, Path(args.outdir), args.prefix)
    # The model's file and sidecar and the scene (opened lazily) before TensorFlow loads:
    # their errors come at once, not after seconds of start-up.
    read_sidecar(args.model)
    from ..io import raster  # noqa: F401  (its warning filters outlive the block below)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ObscuredWarning)  # printed below, once
        scene = _open_for_predict(args)
    pred = resolve_model(args.model, args.precision)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DomainShiftWarning)  # printed below, once
        written = predict_to_files(
            pred, scene, args.outdir, threshold=args.threshold, prefix=args.prefix,
            probability_dtype="float32" if args.float32 else "uint8", overwrite=args.force,
            outlines=args.outlines, min_area_km2=args.min_area_km2, simplify_m=args.simplify_m,
            window=args.window, overlap=args.overlap, batch_size=args.batch_size,
            tta=args.tta, progress=not args.quiet, context=args.context,
            level_correction=not args.no_level_correction)
    _print_guard(written.probability.attrs.get("guard"))
    _print_clouds(written.probability.attrs)
    for kind, path in written.paths.items():
        print(f"{kind}: {Path(args.outdir) / Path(path).name}")
    return 0


def _print_clouds(attrs) -> None:
    """One line on the clouds: a warning (stderr) when more of the glacier area than
    OBSCURED_LIMIT is obscured, else what the cloud mask did."""
    from ..io.clouds import OBSCURED_LIMIT

    share = attrs.get("obscured_glacier_fraction")
    what = attrs.get("scene_id", "the scene")
    if share is not None and share > OBSCURED_LIMIT:
        print(f"glacierkit: warning: {share:.0%} of the glacier area of {what} is obscured "
              f"(cloud, cloud shadow, cirrus or no data; limit {OBSCURED_LIMIT:.0%}): it is "
              "nodata in the map, so the glacier area is a lower bound.", file=sys.stderr)
    elif "cloud_mask" in attrs:
        glacier = f", {share:.1%} of the glacier area" if share is not None else ""
        print(f"clouds: {attrs.get('obscured_fraction', 0):.1%} of the scene obscured{glacier} "
              f"({attrs['cloud_mask'].split(':')[0]}), nodata in the map")


def _cmd_search(args) -> int:
    import warnings
    from pathlib import Path

    from ..exceptions import DomainShiftWarning, ObscuredWarning
    from ..io.stac import search

    bbox = None
    if args.bbox:
        try:
            bbox = [float(v) for v in args.bbox.split(",")]
        except ValueError:
            bbox = args.bbox.split(",")
        if len(bbox) != 4 or not all(isinstance(v, float) for v in bbox):
            raise ParameterError(
                f"--bbox {args.bbox!r}: give west,south,east,north in degrees, e.g. "
                "--bbox=-117.30,52.15,-117.20,52.22 (with = when it starts with a minus)."
            )
    found = search(api=args.api, collections=args.collections, bbox=bbox,
                   outlines=args.glaciers, rgi_ids=_band_names(args.rgi_ids) if args.rgi_ids
                   else None, dates=args.dates, max_cloud=args.max_cloud,
                   max_items=args.max_items, page_size=args.page_size)
    if found.table.empty:
        print("no items found", file=sys.stderr)
        return 1
    cols = ["id", "date", "sensor", "scene_cloud_pct", "glacier_obscured_pct",
            "glacier_clear_pct"]
    print(found.table[cols].to_string(index=False))
    if args.json:
        print(f"items: {found.to_json(args.json)}")
    if not args.predict:
        return 0
    from ..io.stac import open_item
    from ..staging import check_target
    from ..unet.artifact import resolve_model
    from ..unet.output import predict_to_files

    model, outdir = args.predict
    pred = resolve_model(model, None)
    threshold = float(pred.sidecar.get("architecture", {}).get("threshold", 0.5))
    chosen = found.items[: args.top]
    for item in chosen:
        check_target(Path(outdir) / item.id, "", overwrite=args.force)
    for item in chosen:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ObscuredWarning)
            scene = open_item(item, outlines=found.outlines, bbox=None if found.outlines
                              is not None else found.bbox)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DomainShiftWarning)  # printed below, once
            written = predict_to_files(pred, scene, Path(outdir) / item.id,
                                       threshold=threshold, overwrite=args.force,
                                       outlines=True, progress=False)
        _print_guard(written.probability.attrs.get("guard"))
        _print_clouds(written.probability.attrs)
        for kind, path in written.paths.items():
            print(f"{item.id} {kind}: {path}")
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
    p.add_argument("scene", nargs="?", help="scene: GeoTIFF, Landsat product folder, its "
                   "_MTL.txt or .tar/.tar.gz, STAC item URL or sample name (leave out with "
                   "--stac)")
    p.add_argument("outdir", help="output folder")
    g = p.add_argument_group("STAC and clouds")
    g.add_argument("--stac", metavar="ITEM", default=None,
                   help="predict a STAC item: its URL, a local item .json, or an id looked "
                   "up in --api (as `glacierkit search` prints them)")
    g.add_argument("--api", default=None,
                   help="STAC API for an item id: a URL or earth-search, planetary-computer "
                   "(default: $GLACIERKIT_STAC_API, else earth-search)")
    g.add_argument("--glaciers", metavar="OUTLINES", default=None,
                   help="glacier outlines (file or sample name): with --stac only their "
                   "area (plus 300 m) is loaded; the obscured share of their area goes into "
                   "the tags and is warned about above 20%%")
    g.add_argument("--clouds", metavar="LAYER", default=None,
                   help="cloud layer to make nodata: a QA_PIXEL or SCL file; 'none' keeps "
                   "clouds (default: the product's own layer when it has one)")
    g.add_argument("--cloud-kind", choices=["qa_pixel", "scl"], default=None,
                   help="what --clouds is, when its file name does not say")
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
    p.add_argument("--level", default=None, choices=["surface", "toa"],
                   help="the scene's processing level, when its metadata do not say or say it "
                   "wrongly: surface reflectance or top-of-atmosphere (default: from the "
                   "metadata, else from the data); a toa scene is corrected to surface "
                   "reflectance by dark-object subtraction before the model sees it")
    p.add_argument("--no-level-correction", action="store_true",
                   help="predict a top-of-atmosphere scene as it is, without dark-object "
                   "subtraction")
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
    p = sub.add_parser("search", help="find scenes of glaciers in a STAC API, clearest first",
                       description="Search a STAC API (default Earth Search) for Sentinel-2 "
                       "L2A and Landsat Collection 2 Level-2 scenes of glaciers, ranked by the "
                       "share of the glacier area each sees clearly (its own cloud layer, read "
                       "over the outlines), and optionally predict the best ones.")
    p.add_argument("--api", default=None,
                   help="STAC API URL or name: earth-search, planetary-computer (default: "
                   "$GLACIERKIT_STAC_API, else earth-search)")
    p.add_argument("--collections", nargs="+", default=None, metavar="C",
                   help="collection ids (default: sentinel-2-l2a landsat-c2-l2)")
    p.add_argument("--glaciers", metavar="OUTLINES", default=None,
                   help="glacier outlines (RGI shapefile/GeoPackage, or a sample name such as "
                   "athabasca) to search and rank over")
    p.add_argument("--rgi-ids", default=None, metavar="IDS",
                   help="comma-separated glacier ids of --glaciers to keep")
    p.add_argument("--bbox", default=None, metavar="W,S,E,N",
                   help="search box in degrees instead of outlines (--bbox=-117.3,52.1,...)")
    p.add_argument("--dates", default=None, metavar="A/B",
                   help="date range, e.g. 2020-07-01/2020-09-30 (or a year: 2020)")
    p.add_argument("--max-cloud", type=float, default=None, metavar="PCT",
                   help="largest scene cloud cover in %% (eo:cloud_cover)")
    p.add_argument("--max-items", type=int, default=100, help="most items to fetch and rank")
    p.add_argument("--page-size", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--json", metavar="FILE", default=None,
                   help="write the ranked items as a GeoJSON ItemCollection")
    p.add_argument("--predict", nargs=2, metavar=("MODEL", "OUTDIR"), default=None,
                   help="also predict the best --top items into OUTDIR/<item id>/ "
                   "(probability, mask, outlines.gpkg)")
    p.add_argument("--top", type=int, default=1, help="items to predict with --predict")
    p.add_argument("--force", action="store_true",
                   help="replace earlier predictions in OUTDIR/<item id>/")
    p.set_defaults(func=_cmd_search)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:  # HTTP retries of a STAC API end in one clear error, or succeed
        logging.getLogger("urllib3").setLevel(logging.ERROR)
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
