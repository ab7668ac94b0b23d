"""``python -m retail_pipeline.cli``: the ``retail-pipeline`` command."""

from retail_pipeline.cli import main

main()
