"""The classical baseline: NDSI thresholds, band separability and the live slider.

- :mod:`~glacierkit.ndsi.threshold`: exact one-pass threshold sweeps, histograms, Otsu,
  the learned threshold.
- :mod:`~glacierkit.ndsi.separability`: which bands and indices separate glacier from the rest.
- :mod:`~glacierkit.ndsi.slider`: the interactive threshold explorer of notebook 03.
"""

from .._util import lazy_exports

_EXPORTS = {
    # separability
    "separability": ".separability",
    "OLI_ROLES": ".separability",
    "INDEX_FEATURES": ".separability",
    "oli_numbers": ".separability",
    "pixel_table": ".separability",
    "pooled_pixel_table": ".separability",
    "auc": ".separability",
    "jeffries_matusita": ".separability",
    "lda_auc": ".separability",
    "rank_features": ".separability",
    "rank_combinations": ".separability",
    "describe_rank": ".separability",
    "spectral_profiles": ".separability",
    # slider
    "slider": ".slider",
    "ThresholdExplorer": ".slider",
    # threshold
    "threshold": ".threshold",
    "COLUMNS": ".threshold",
    "RULE": ".threshold",
    "LEARNED_FILE": ".threshold",
    "paper_grid": ".threshold",
    "fine_grid": ".threshold",
    "ClassHistogram": ".threshold",
    "class_histogram": ".threshold",
    "class_histogram_nd": ".threshold",
    "sweep": ".threshold",
    "sweep_scene": ".threshold",
    "sweep_scenes": ".threshold",
    "pool": ".threshold",
    "IndexHistogram": ".threshold",
    "histogram": ".threshold",
    "otsu": ".threshold",
    "histogram_summary": ".threshold",
    "best_threshold": ".threshold",
    "learned_vs_oracle": ".threshold",
    "learn": ".threshold",
    "learned_threshold": ".threshold",
    "stack": ".threshold",
    "water_as_glacier": ".threshold",
    "save_learned": ".threshold",
    "load_learned": ".threshold",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
