"""OpenLineage events for every load (docs/operations.md, "Lineage").

A load's inputs (the file, topic or source table), its output (the Bronze table) and its counts
become a run's START and COMPLETE (or FAIL) events, written to a file transport by default and to
``OPENLINEAGE_URL`` when it is set.
"""
