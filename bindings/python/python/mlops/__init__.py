"""mlops: the production machine-learning loop's statistics on numpy arrays.

- :mod:`mlops.drift`: two-sample drift statistics with scipy's names, arguments and result
  objects (``ks_2samp``, ``cramervonmises_2samp``, ``anderson_ksamp``, ``mannwhitneyu``,
  ``wasserstein_distance``, ``energy_distance``, ``chi2_contingency``), plus ``psi`` and
  ``jensenshannon``;
- :mod:`mlops.metrics`: binary-classification metrics with scikit-learn's names and
  arguments;
- :func:`mlops.explain`: Shapley values of a model, shaped like shap's;
  :func:`mlops.permutation_importance`: scikit-learn's permutation importance;
- :mod:`mlops.calibration`: isotonic and Platt calibration, the reliability curve;
- :mod:`mlops.performance`: performance estimated before labels arrive (CBPE, NannyML's
  definitions);
- :mod:`mlops.fairness`: metrics by sensitive group and disparities with Fairlearn's names
  and signatures (``MetricFrame``, ``demographic_parity_difference``, ...) and AIF360's signed
  measures against a reference group;
- :mod:`mlops.data`: Parquet files and Arrow data (pyarrow, polars, pandas with Arrow
  dtypes, through the Arrow PyCapsule interface) as tables; every function taking a table
  accepts Arrow data directly;
- :mod:`mlops.validation`: schema inference and validation reports;
- :mod:`mlops.train`: the MLP trained on numpy arrays, the compiled model (``predict_proba``),
  and hyperparameter studies with a Python objective;
- :mod:`mlops.registry`: the model registry at any URL;
- :mod:`mlops.serve`: a promotion policy tried on labeled data (simulated rollout).

Computations run in Rust with the GIL released. Contiguous float64 (and, for the metrics,
float32) arrays are read in place; other layouts are copied; other dtypes are converted when
they are numeric and refused with ``TypeError`` when they are not.
"""

from . import calibration, data, drift, fairness, metrics, performance, registry, serve, train, validation
from ._native import __version__
from .explanations import explain, permutation_importance

__all__ = ["calibration", "data", "drift", "fairness", "metrics", "performance", "registry", "serve", "train", "validation", "explain", "permutation_importance", "__version__"]
