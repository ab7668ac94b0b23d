"""Stand-ins for production systems, to run the whole pipeline on a laptop and in tests.

Each module starts (or plays) one system the pipeline meets in production:

- :mod:`~retail_pipeline.local.kafka_broker`: a single-node Apache Kafka broker (KRaft) on
  loopback, jars from Maven Central (``retail-pipeline kafka up``).
- :mod:`~retail_pipeline.local.postgres`: a PostgreSQL cluster holding the reference
  ``customers`` and ``products`` tables (``retail-pipeline postgres up``).
- :mod:`~retail_pipeline.local.reference_api`: the reference HTTP API of docs/batch-sources.md
  (``retail-pipeline api-server``).
- :mod:`~retail_pipeline.local.airflow`: a standalone Airflow (``retail-pipeline airflow up``).
- :mod:`~retail_pipeline.local.snowflake_emulator`: snowduck, patched, standing in for Snowflake.
- :mod:`~retail_pipeline.local.services`: what they share (homes, locks, port checks).

The production packages (``events``, ``ingestion``, ``warehouse``, ``transform``,
``orchestration``, ``dashboard``) never import this package; only the command line, the demo,
the benchmarks and the tests do (``tests/test_imports.py`` holds that rule).
"""
