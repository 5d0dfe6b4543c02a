#!/usr/bin/env bash
# The compose `airflow-init` service: the audit database and its tables, Airflow's schema (with the
# FAB auth manager's tables), the `admin` user and the pools of every upstream registry the
# manifests use.
# Every step is idempotent: it runs at each `docker compose up`.
set -euo pipefail
secrets=/opt/airflow/secrets

# The audit store gets a database and a role of its own, apart from Airflow's metadata database.
AUDIT_PASSWORD=$(cat "$secrets/audit_password") python - <<'PY'
import os

import psycopg2

conn = psycopg2.connect(host="postgres", user="airflow", dbname="airflow")  # password: PGPASSFILE
conn.autocommit = True
with conn.cursor() as cur:
    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = 'ecr_mirror_audit'")
    verb = "ALTER" if cur.fetchone() else "CREATE"
    cur.execute(f"{verb} ROLE ecr_mirror_audit LOGIN PASSWORD %s", (os.environ["AUDIT_PASSWORD"],))
    cur.execute("SELECT 1 FROM pg_database WHERE datname = 'ecr_mirror_audit'")
    if cur.fetchone() is None:
        cur.execute("CREATE DATABASE ecr_mirror_audit OWNER ecr_mirror_audit")
        print("created the database ecr_mirror_audit")
conn.close()
PY

# the audit's tables, created or upgraded (every AuditStore would do it on first use; here it
# happens once, before any worker starts)
ecr-mirror audit migrate
airflow db migrate
# FAB's `users create` leaves an existing user as it is (and says so)
airflow users create --username admin --role Admin --firstname Airflow --lastname Admin \
  --email admin@example.invalid --password "$(cat "$secrets/admin_password")"
ecr-mirror-pools /opt/airflow/config/manifests
