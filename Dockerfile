# Two targets on apache/airflow:3.3.2-python3.11:
#   production  Airflow with ecr-mirror and its pinned dependencies (constraints.txt), nothing else;
#               every Airflow service of docker-compose.yaml runs it (dags/, plugins/ and config/
#               are mounted).
#   sandbox     production plus the offline stand-ins of the compose `sandbox` profile: Debian's
#               docker-registry (CNCF Distribution) as the upstreams, moto and the ECR emulator.
FROM apache/airflow:3.3.2-python3.11 AS production
COPY --chown=airflow:root pyproject.toml constraints.txt README.md /opt/ecr-mirror/
COPY --chown=airflow:root plugins/ecr_mirror /opt/ecr-mirror/plugins/ecr_mirror
COPY --chown=airflow:root deploy /opt/ecr-mirror/deploy
RUN pip install --no-cache-dir -c /opt/ecr-mirror/constraints.txt /opt/ecr-mirror

FROM production AS sandbox
USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends docker-registry \
    && apt-get clean && rm -rf /var/lib/apt/lists/*
USER airflow
COPY --chown=airflow:root sandbox /opt/ecr-mirror/sandbox
RUN pip install --no-cache-dir -c /opt/ecr-mirror/constraints.txt "/opt/ecr-mirror[sandbox]"
# `python -m sandbox.ecr_emulator` and `python -m sandbox.compose_seed`
ENV PYTHONPATH=/opt/ecr-mirror
