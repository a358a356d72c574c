#!/usr/bin/env bash
# Submit a Cadenza Spark job to a cluster (standalone, YARN or Kubernetes).
#
#   CADENZA_STACK_PROFILE=cluster infra/deploy/spark-submit.sh etl run --fma-dir /data/fma
#   CADENZA_SPARK_MASTER=spark://host:7077 infra/deploy/spark-submit.sh model train --k 16
#   infra/deploy/spark-submit.sh --dry-run stream plays     # print the spark-submit command
#
# The driver is the `cadenza` CLI, run by this checkout's virtualenv. Executors get
# Cadenza's packages as a zip (--py-files), the third-party packages as a venv-pack
# archive (--archives …#environment, built once into the cache; their Python is
# ./environment/bin/python) and pyspark from their SPARK_HOME: no shared virtualenv.
# The master comes from settings (CADENZA_SPARK_MASTER, or the cluster profile's
# spark://127.0.0.1:<CADENZA_SPARK_MASTER_PORT>). See infra/deploy/submit.py.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-$ROOT/.venv/bin/python}" -m infra.deploy.submit "$@"
