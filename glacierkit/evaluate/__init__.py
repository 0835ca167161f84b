"""Scoring: the U-Net against NDSI, on the test scenes and on another region.

- :mod:`~glacierkit.evaluate.compare`: the paper's Table 4 with confidence intervals,
  failure analysis, error maps, and the comparison of all methods on the test scenes.
- :mod:`~glacierkit.evaluate.regions`: a model on a region it was never trained on.
- :mod:`~glacierkit.evaluate.conditions`: the benchmark across processing levels, offsets
  and resolutions, judged by the worst condition.
- :mod:`~glacierkit.evaluate.adapt`: fine-tuning on a new region, scored on a held-out part.
- :mod:`~glacierkit.evaluate.change`: glacier area through time against a dated outline, with
  its uncertainty (also ``glacierkit.change``).
"""

from .._util import lazy_exports

_EXPORTS = {
    # adapt
    "adapt": ".adapt",
    "Adaptation": ".adapt",
    # change
    "change": ".change",
    "GlacierChange": ".change",
    "glacier_change": ".change",
    "area_uncertainty": ".change",
    "outline_figure": ".change",
    "decimal_year": ".change",
    # compare
    "compare": ".compare",
    "UNET": ".compare",
    "NDSI_LEARNED": ".compare",
    "NDSI_ORACLE": ".compare",
    "score_methods": ".compare",
    "binary_map": ".compare",
    "MethodScores": ".compare",
    "PAPER_TABLE": ".compare",
    "Comparison": ".compare",
    "compare_methods": ".compare",
    "predict_unlabelled": ".compare",
    "SceneResult": ".compare",
    "block_counts": ".compare",
    "bootstrap_ci": ".compare",
    "area_error": ".compare",
    "evaluate_scene": ".compare",
    "comparison_table": ".compare",
    "table4": ".compare",
    "surface_classes": ".compare",
    "failure_table": ".compare",
    "error_map": ".compare",
    "save_results": ".compare",
    # conditions
    "conditions": ".conditions",
    "Condition": ".conditions",
    "CONDITIONS": ".conditions",
    "BENCHMARK_SCENES": ".conditions",
    "Benchmark": ".conditions",
    "benchmark": ".conditions",
    "simulate_toa": ".conditions",
    "condition_scene": ".conditions",
    "benchmark_scenes": ".conditions",
    "spectral_check": ".conditions",
    "worst": ".conditions",
    "MARGIN": ".conditions",
    "get_conditions": ".conditions",
    # regions
    "regions": ".regions",
    "CrossRegion": ".regions",
    "cross_region": ".regions",
    "passes": ".regions",
    "spectral_sense": ".regions",
    "ROCK_FA_LIMIT": ".regions",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
