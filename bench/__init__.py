"""Cadenza's benchmarks: each is run from the checkout as ``python -m bench.<name>``, prints a
table and writes its figures as JSON (some a PNG too) to ``bench/results/``.

One module each: ``bench.etl``, ``bench.etl_extract``, ``bench.stack``, ``bench.streaming``,
``bench.train``. A package each, its runner in ``__main__`` and its parts beside it:
``bench.e2e``, ``bench.faults``, ``bench.gateway``, ``bench.recommender``. What they share
(run guard, temporary stack, results, percentiles, the lag sampler) is :mod:`bench.common`.
"""
