"""The K-Means model behind ``cadenza model …``: dataset, K-Means fit, evaluation, registry, report.

:mod:`~streaming_jobs.model.train` is the ``cadenza model train`` job; it reads the
feature vectors (:mod:`~streaming_jobs.model.dataset`), fits the Spark ML pipeline
(:mod:`~streaming_jobs.model.kmeans`), evaluates it (:mod:`~streaming_jobs.model.evaluation`)
and registers it (:mod:`~streaming_jobs.model.registry`); :mod:`~streaming_jobs.model.report`
draws a model's HTML page and :mod:`~streaming_jobs.model.progress` is how these report progress.
"""
