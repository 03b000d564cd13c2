#!/bin/sh
# One-shot job of the compose `mlflow` profile: creates the MLflow artifact bucket in MinIO
# (idempotent: an existing bucket is kept) and exits 0, which lets the mlflow service start.
# Runs in the minio/mc image; MINIO_ROOT_USER, MINIO_ROOT_PASSWORD and MLFLOW_BUCKET come from
# deploy/.env through docker-compose.yml.
set -eu
: "${MINIO_ROOT_USER:?}" "${MINIO_ROOT_PASSWORD:?}" "${MLFLOW_BUCKET:?}"
mc alias set chatgate http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null
mc mb --ignore-existing "chatgate/$MLFLOW_BUCKET"
# artifacts are private: no anonymous access
mc anonymous set none "chatgate/$MLFLOW_BUCKET"
echo "bucket $MLFLOW_BUCKET ready"
