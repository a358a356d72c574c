"""Bench only: a recommender worker whose catalogue is :func:`bench.recommender.data.big_catalogue`.

Started by ``bench.recommender`` as ``python -m bench.recommender.synthetic_worker --web-port P``:
the real worker (``recommender_stream.worker``: Faust app, agent, table, feeds) with the
catalogue loader replaced by the bench's 106,574-track synthetic catalogue, so one
worker is measured at full catalogue size without storing 106k feature vectors in
MongoDB first.
"""

from __future__ import annotations

import sys

import recommender_stream.app as worker_app
from bench.recommender.data import big_catalogue
from recommender_stream.worker import main

worker_app._load = lambda settings: big_catalogue()

if __name__ == "__main__":
    main(sys.argv[1:])
