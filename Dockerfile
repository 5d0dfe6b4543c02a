# Airflow image with ecr-mirror and its pinned dependencies (constraints.txt). dags/, plugins/ and
# config/ are mounted by docker-compose.yaml. The same image runs the compose `sandbox` profile:
# Debian's docker-registry (CNCF Distribution) as the upstreams, moto and the ECR emulator.
FROM apache/airflow:3.3.2-python3.11
USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends docker-registry \
    && apt-get clean && rm -rf /var/lib/apt/lists/*
USER airflow
COPY --chown=airflow:root pyproject.toml constraints.txt README.md /opt/ecr-mirror/
COPY --chown=airflow:root plugins/ecr_mirror /opt/ecr-mirror/plugins/ecr_mirror
COPY --chown=airflow:root sandbox /opt/ecr-mirror/sandbox
RUN pip install --no-cache-dir -c /opt/ecr-mirror/constraints.txt "/opt/ecr-mirror[sandbox]"
# `python -m sandbox.ecr_emulator` and `python -m sandbox.compose_seed` (sandbox profile)
ENV PYTHONPATH=/opt/ecr-mirror
