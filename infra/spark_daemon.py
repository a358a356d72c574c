"""Spark's Python worker daemon (``spark.python.daemon.module``), without the 0.2 s per task
that Python 3.11 spends re-reading unchanged zip archives.

Source: started by Spark in place of ``pyspark.daemon``: ``python -m infra.spark_daemon``
with a local master (:func:`infra.spark.spark_session`), ``python -m
cadenza_spark_daemon`` on a cluster's executors (this file, copied into their environment
archive by :mod:`infra.deploy.executor_env`; it imports nothing of Cadenza's for that
reason). It forks the Python workers that run Cadenza's UDFs. Destination: those
workers, which inherit the patch below.

Before each task, pyspark's worker calls ``importlib.invalidate_caches()``
(``pyspark.worker_util.setup_spark_files``). On Python 3.11 that makes every
``zipimporter`` re-read its archive's whole directory, and Spark puts three archives on
every worker's path: ``pyspark.zip`` (1,220 entries), the py4j zip and the
``spark-core`` jar (5,264 entries). Measured here: 205 ms per call, per task, on every
micro-batch of every streaming query. CPython 3.12 made this lazy (gh-103200); this
module does the same for 3.11 by re-reading an archive only when its size or
modification time has changed, which is all a re-read could find. Archives that Spark
adds for a job (``--py-files``) are new paths, read when first imported, as before.
"""

from __future__ import annotations

import os
import zipimport
from typing import Any

#: The module's name in the executors' environment archive.
EXECUTOR_MODULE = "cadenza_spark_daemon"
#: Per archive: its (mtime, size) when last read, and the directory read then.
_read: dict[str, tuple[tuple[int, int], Any]] = {}
_reread = zipimport.zipimporter.invalidate_caches


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def invalidate_caches(self: Any) -> None:
    """``zipimporter.invalidate_caches``, re-reading only an archive that changed on disk."""
    stamp = _stamp(self.archive)
    known = _read.get(self.archive)
    if stamp is not None and known is not None and known[0] == stamp:
        self._files = known[1]  # every importer of one archive shares what was read
        return
    _reread(self)
    if stamp is not None:
        _read[self.archive] = (stamp, self._files)


def install() -> None:
    """Patch ``zipimport`` in this process (and the workers it forks)."""
    zipimport.zipimporter.invalidate_caches = invalidate_caches  # type: ignore[method-assign]


if __name__ == "__main__":
    install()
    from pyspark import daemon

    daemon.manager()
