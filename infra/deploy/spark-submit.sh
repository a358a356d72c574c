#!/usr/bin/env bash
# Submit a Cadenza Spark job to a cluster (standalone, YARN or Kubernetes).
#
#   CADENZA_SPARK_MASTER=spark://host:7077 infra/deploy/spark-submit.sh etl run --fma-dir /data/fma
#   infra/deploy/spark-submit.sh model train --k 16
#   infra/deploy/spark-submit.sh stream plays
#
# Cadenza's Python packages travel to the executors as a zip (--py-files), so the
# executors need only Python 3.11 with the third-party packages (numpy, librosa,
# pymongo, kafka-python, pydantic), not this checkout or its virtualenv. The Kafka
# connector jars come from the cache (`cadenza stack prepare` resolves them).
set -euo pipefail
cd "$(dirname "$0")/../.."

: "${CADENZA_SPARK_MASTER:?set CADENZA_SPARK_MASTER, e.g. spark://127.0.0.1:7077}"
PYTHON="${PYTHON:-.venv/bin/python}"
BUILD="${CADENZA_DATA_DIR:-.cadenza}/deploy"
mkdir -p "$BUILD"

# 1. Cadenza's packages as one zip for --py-files.
rm -f "$BUILD/cadenza.zip"
zip -qr "$BUILD/cadenza.zip" schemas infra etl streaming_jobs -x '*/__pycache__/*'

# 2. The Kafka connector jars (resolved into the cache once).
JARS="$("$PYTHON" -c 'from infra.settings import get_settings; from infra.spark import kafka_connector_jars; print(",".join(map(str, kafka_connector_jars(get_settings()))))')"

# 3. The driver is the `cadenza` CLI itself.
exec "$(dirname "$("$PYTHON" -c 'import pyspark, sys; print(pyspark.__file__)')")/bin/spark-submit" \
  --master "$CADENZA_SPARK_MASTER" \
  --py-files "$BUILD/cadenza.zip" \
  --jars "$JARS" \
  --conf spark.sql.session.timeZone=UTC \
  --conf spark.python.worker.reuse=true \
  infra/__main__.py "$@"
