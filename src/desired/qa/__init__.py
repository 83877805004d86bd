"""Quality assurance: per-exposure metrics, plots and the production's HTML report.

* :mod:`desired.qa.metrics` -- metrics of one camera of one exposure (arrays and
  containers in, plain dicts out) and their classification against thresholds;
* :mod:`desired.qa.plots` -- matplotlib (Agg) PNG figures;
* :mod:`desired.qa.report` -- collects the products of a production tree, writes
  the exposure-qa files and the static HTML report.
"""
