"""Is the pipeline healthy? Checks over Bronze, Kafka and Gold against thresholds
(docs/operations.md#health: :mod:`~retail_pipeline.monitoring.health`).

It reads the warehouse and the Kafka positions; the command line (``retail-pipeline health``),
the dashboard and the DAGs' health task report what it finds.
"""
