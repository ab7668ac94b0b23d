"""The pipeline's Prometheus metrics, defined once (docs/operations.md, "Metrics").

Every process records into one registry; long-running processes serve it on ``/metrics``,
batch commands write it in the textfile-collector format when ``RETAIL_METRICS_DIR`` is set.
"""
