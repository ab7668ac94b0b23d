# The pipeline's images (docs/docker.md), built from the repository root:
#
#   docker build -t retail-pipeline .                           # the CLI: retail-pipeline <command>
#   docker build --target airflow -t retail-pipeline-airflow .  # the same, plus Airflow 3 and the DAGs
#
# docker/compose.yml builds both. Stages: `build` installs the dependencies from the hashed lock
# files (requirements/image.lock, image-airflow.lock: `make lock`, pinned to the same versions as
# the dev lock) and then the package (a wheel, not an editable checkout) with no index at all;
# `app` is the runtime base (an unprivileged user, the dbt project, the data folder); `airflow` and
# `pipeline` (the default target) each copy in their own environment. Every dependency installs
# from a wheel whose SHA-256 the lock lists: no compiler, and no unlisted file, in any stage.
# The base image is pinned by tag (readable) and by the digest of its multi-architecture index
# (what is pulled); docs/docker.md says how to move it.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d
# The CLI's extras: Kafka (ingest --kafka, produce), Snowflake (RETAIL_TARGET=snowflake) and
# PostgreSQL (load-batch --postgres); the airflow target adds Airflow and Cosmos.
ARG EXTRAS=kafka,snowflake,postgres

FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

FROM base AS build
WORKDIR /build
RUN python -m venv /opt/venv
# pip refuses any file whose SHA-256 the lock does not list, and any dependency it does not name.
COPY requirements/build.lock requirements/image.lock requirements/image-airflow.lock ./requirements/
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --require-hashes -r requirements/build.lock \
    && pip install --require-hashes -r requirements/image.lock
COPY pyproject.toml README.md ./
COPY src ./src
# The package itself, built by the locked setuptools and installed with no index: every
# requirement of its extras must already be in place from the lock, or the build fails here.
ARG EXTRAS
RUN pip wheel --no-deps --no-build-isolation --no-index --wheel-dir /wheels . \
    && pip install --no-index --find-links /wheels "retail-pipeline[${EXTRAS}]"

FROM build AS build-airflow
ARG EXTRAS
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --require-hashes -r requirements/image-airflow.lock \
    && pip install --no-index --find-links /wheels "retail-pipeline[${EXTRAS},airflow]"

FROM base AS app
# One unprivileged user for every service; the folders it writes belong to it, so a named
# volume mounted there starts with the right owner.
RUN groupadd --system --gid 10001 retail \
    && useradd --system --uid 10001 --gid retail --home-dir /home/retail --create-home \
        --shell /usr/sbin/nologin retail \
    && mkdir -p /app/data /opt/airflow \
    && chown retail:retail /app/data /opt/airflow
WORKDIR /app
# dbt writes target/ and logs/ into the project (and Cosmos its manifest), hence the owner.
COPY --chown=retail:retail dbt ./dbt
COPY docker/healthcheck.py docker/init_warehouse.py ./docker/
# The settings a container needs beyond the CLI's defaults (the rest come from docker/compose.yml
# and the env file): the package is installed from a wheel, so the dbt project is named here.
ENV RETAIL_DBT_PROJECT_DIR=/app/dbt \
    RETAIL_WAREHOUSE=/app/data/warehouse.duckdb \
    RETAIL_LANDING_DIR=/app/data/landing

FROM app AS airflow
COPY --from=build-airflow /opt/venv /opt/venv
COPY airflow/dags ./airflow/dags
COPY docker/airflow-entrypoint.sh ./docker/
ENV AIRFLOW_HOME=/opt/airflow
USER retail
EXPOSE 8080
ENTRYPOINT ["/bin/sh", "/app/docker/airflow-entrypoint.sh"]

FROM app AS pipeline
COPY --from=build /opt/venv /opt/venv
USER retail
ENTRYPOINT ["retail-pipeline"]
CMD ["--help"]
