#!/usr/bin/env bash
# Generate the compose stack's secrets once, into the `airflow-secrets` volume (the compose
# `airflow-secrets` service runs this as root before anything else starts):
#   jwt_secret, api_secret_key, fernet_key  read by every Airflow component (AIRFLOW__..._CMD)
#   admin_password                          the UI's `admin` user (created by airflow-init)
#   postgres_password, audit_password       the `airflow` and `ecr_mirror_audit` database roles
#   pgpass                                  both roles' passwords for libpq (PGPASSFILE)
# A file that exists is kept, so restarts and upgrades keep their secrets; delete the volume (or a
# file) to rotate. Usage: generate-secrets.sh DIR [UID]
set -euo pipefail
dir=${1:?usage: generate-secrets.sh DIR [UID]}
owner=${2:-${AIRFLOW_UID:-50000}}
mkdir -p "$dir"
umask 077

generate() {  # NAME PYTHON-EXPRESSION: write the value, without a newline, unless the file exists
  [ -s "$dir/$1" ] && return
  python -c "import secrets, sys; from cryptography.fernet import Fernet; sys.stdout.write($2)" >"$dir/$1.new"
  mv "$dir/$1.new" "$dir/$1"
  echo "generated $1"
}

generate jwt_secret "secrets.token_urlsafe(48)"
generate api_secret_key "secrets.token_urlsafe(48)"
generate fernet_key "Fernet.generate_key().decode()"
generate admin_password "secrets.token_urlsafe(18)"
# hex: nothing to escape in a database URL or a pgpass line
generate postgres_password "secrets.token_hex(24)"
generate audit_password "secrets.token_hex(24)"
printf 'postgres:5432:*:airflow:%s\npostgres:5432:ecr_mirror_audit:ecr_mirror_audit:%s\n' \
  "$(cat "$dir/postgres_password")" "$(cat "$dir/audit_password")" >"$dir/pgpass"

# the Airflow containers run as AIRFLOW_UID with group 0 (the official image's convention)
if [ "$(id -u)" -eq 0 ]; then chown "$owner:0" "$dir"/*; fi
chmod 0400 "$dir"/*
# the postgres container (its own user) reads this one as POSTGRES_PASSWORD_FILE
chmod 0444 "$dir/postgres_password"
