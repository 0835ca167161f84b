"""Running the notebooks: pipeline files, papermill, batches of scenes, the console.

- :mod:`~glacierkit.pipeline.config`: pipeline files and their checks.
- :mod:`~glacierkit.pipeline.notebooks`: notebook parameters and headless execution.
- :mod:`~glacierkit.pipeline.run`: ``glacierkit run``: steps, skipping, the run folder.
- :mod:`~glacierkit.pipeline.batch`: many scenes on a Dask cluster.
- :mod:`~glacierkit.pipeline.report`: the HTML report of a run.
- :mod:`~glacierkit.pipeline.cli`: the ``glacierkit`` command.
"""

from .._util import lazy_exports

_EXPORTS = {
    # batch
    "batch": ".batch",
    "process_scene": ".batch",
    "run_scenes": ".batch",
    "scene_dir": ".batch",
    "pooled_scores": ".batch",
    "RESULT_FILE": ".batch",
    "METRICS": ".batch",
    # cli
    "cli": ".cli",
    "main": ".cli",
    # config
    "config": ".config",
    "load_pipeline": ".config",
    "check_run_name": ".config",
    "read_scene_list": ".config",
    "BATCH_KEYS": ".config",
    # notebooks
    "notebooks": ".notebooks",
    "notebook_parameters": ".notebooks",
    "check_parameters": ".notebooks",
    "execute_notebook": ".notebooks",
    "NOTEBOOK_DIR": ".notebooks",
    "KERNEL_NAME": ".notebooks",
    "check_kernel": ".notebooks",
    "parse_parameters": ".notebooks",
    # report
    "report": ".report",
    "notebook_html": ".report",
    "write_index": ".report",
    "KEY_FIGURES": ".report",
    "REPORT_DIR": ".report",
    # run
    "run": ".run",
    "run_pipeline": ".run",
    "run_batch": ".run",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
