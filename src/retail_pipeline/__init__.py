"""Retail analytics pipeline: events and reference data into a Bronze layer, dbt Silver and Gold."""

__version__ = "0.1.0"
