"""Adapters around the pure ``scoring`` library: Label Studio, media, models, queue, HTTP, CLI."""

__version__ = "0.1.0"
