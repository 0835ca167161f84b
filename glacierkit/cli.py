"""The ``glacierkit`` command line.

    glacierkit run PIPELINE.yml [--name NAME] [--force] [--only STEP ...] [--set STEP.KEY=VALUE]
    glacierkit fetch-data            # put every sample file in the cache (for offline use)
    glacierkit params NOTEBOOK       # list a notebook's parameters
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
    from .run import run_pipeline

    run_pipeline(args.pipeline, name=args.name, force=args.force, only=args.only,
                 overrides=_parse_sets(args.set))
    return 0


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
    p.set_defaults(func=_cmd_run)
    p = sub.add_parser("fetch-data", help="download every sample file into the cache")
    p.set_defaults(func=_cmd_fetch)
    p = sub.add_parser("params", help="list a notebook's parameters")
    p.add_argument("notebook")
    p.set_defaults(func=_cmd_params)
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
