# Airflow image with ecr-mirror's pinned dependencies (dags/, plugins/ and config/ are mounted).
FROM apache/airflow:3.3.2-python3.11
COPY --chown=airflow:root pyproject.toml constraints.txt README.md /opt/ecr-mirror/
COPY --chown=airflow:root plugins/ecr_mirror /opt/ecr-mirror/plugins/ecr_mirror
RUN pip install --no-cache-dir -c /opt/ecr-mirror/constraints.txt /opt/ecr-mirror
