"""A deterministic retail shop that writes the pipeline's input, faults included, and its truth.

:func:`generate` writes the three topics' event files and the reference snapshots
(``customers.json``, ``products.json``) for a number of days, with the faults of
:class:`FaultRates` injected on purpose, and ``truth.json``: the six answers of docs/metrics.md
computed from the simulator's own decisions (:mod:`~retail_pipeline.simulation.truth`), against
which every test, the demo and the benchmarks check the pipeline's numbers.

The parts, one concern each: ``simulator`` (:func:`generate`, the wiring and the days),
``shop`` (customers, products, orders and their lifecycles), ``encoding`` (a valid event as a
JSON line, its fields from the contract), ``faults`` (the fault injector: :class:`FaultRates`,
duplicates, late and out-of-order arrivals, garbage lines, orphans), ``writers`` (event files,
snapshots, ``truth.json``), ``draws`` (the shared random draws) and ``truth`` (the answers).

Nothing in the pipeline's production packages imports this package: it stands in for the shop,
as :mod:`retail_pipeline.local` stands in for its systems.
"""

from retail_pipeline.simulation.faults import FaultRates
from retail_pipeline.simulation.simulator import GenerationSummary, generate

__all__ = ["FaultRates", "GenerationSummary", "generate"]
