"""A deterministic retail shop that writes the pipeline's input, faults included, and its truth.

:func:`generate` writes the three topics' event files and the reference snapshots
(``customers.json``, ``products.json``) for a number of days, with the faults of
:class:`FaultRates` injected on purpose, and ``truth.json``: the six answers of docs/metrics.md
computed from the simulator's own decisions (:mod:`~retail_pipeline.simulation.truth`), against
which every test, the demo and the benchmarks check the pipeline's numbers.

Nothing in the pipeline's production packages imports this package: it stands in for the shop,
as :mod:`retail_pipeline.local` stands in for its systems.
"""

from retail_pipeline.simulation.simulator import FaultRates, GenerationSummary, generate

__all__ = ["FaultRates", "GenerationSummary", "generate"]
