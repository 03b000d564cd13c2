#!/bin/sh
# One-shot job of the compose `mlflow` profile: creates MLflow's database in the stack's
# PostgreSQL (the gateway's server, a second database) when it is missing, then exits 0,
# which lets the mlflow service start. Unlike a /docker-entrypoint-initdb.d script it also
# works on a PostgreSQL volume initialised before the profile was first turned on.
# Runs in the postgres image; PGHOST, PGUSER, PGPASSWORD and MLFLOW_DB come from
# docker-compose.yml (deploy/.env).
set -eu
: "${PGHOST:?}" "${PGUSER:?}" "${PGPASSWORD:?}" "${MLFLOW_DB:?}"
case "$MLFLOW_DB" in
  *[!a-z0-9_]*) echo "MLFLOW_DB must be [a-z0-9_]: $MLFLOW_DB" >&2; exit 2 ;;
esac
exists=$(psql -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$MLFLOW_DB'")
if [ "$exists" = "1" ]; then
  echo "database $MLFLOW_DB exists"
else
  createdb -O "$PGUSER" "$MLFLOW_DB"
  echo "database $MLFLOW_DB created"
fi
