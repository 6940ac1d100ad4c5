"""Benchmarks of smart-sizing on real data: label efficiency, label audit, stopping, scale.

Each benchmark is a ``smartsize bench ...`` subcommand (see :mod:`ls_backend.bench.cli`) that
prints its figures and writes ``results.json`` plus PNG plots into ``--out``. They measure the
project's own code (the embedder, :class:`ls_backend.head.ClassifierHead` and
:func:`scoring.pipeline.score_round`), never a benchmark-only variant. BENCHMARKS.md has the
commands and the numbers measured.
"""
