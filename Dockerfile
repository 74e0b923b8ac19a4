# syntax=docker/dockerfile:1
# The clientes-ingest image: flow runs (Kubernetes Jobs and the process worker), the Prefect
# workers, the webhook API and the SQS trigger all run it. Build from the repository root:
#   docker build -t ghcr.io/clientes-ingest/clientes-ingest:0.1.0 .
# Runtime needs: Microsoft ODBC Driver 18 for SQL Server (pyodbc), unixODBC. No ENTRYPOINT on
# purpose: Prefect's Kubernetes worker passes the flow-run command as container args.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# ---------------------------------------------------------------------------------------- build
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# The pinned, hashed dependencies first (.ci/lock generates requirements.lock from pyproject.toml):
# this layer is cached until the lock changes, and every build installs the same bytes.
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock
# Then the project itself, without resolving anything again.
COPY pyproject.toml README.md ./
COPY src ./src
COPY flows ./flows
COPY blocks ./blocks
COPY deployments ./deployments
COPY automations ./automations
RUN pip install --no-deps .

# -------------------------------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime

# Microsoft's apt repository for Debian 12 (bookworm); ACCEPT_EULA is required by msodbcsql18.
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates curl gnupg; \
    curl -fsSL https://packages.microsoft.com/keys/microsoft.asc \
      | gpg --dearmor -o /usr/share/keyrings/microsoft-prod.gpg; \
    echo "deb [arch=$(dpkg --print-architecture) signed-by=/usr/share/keyrings/microsoft-prod.gpg] https://packages.microsoft.com/debian/12/prod bookworm main" \
      > /etc/apt/sources.list.d/mssql-release.list; \
    apt-get update; \
    ACCEPT_EULA=Y apt-get install -y --no-install-recommends msodbcsql18 unixodbc; \
    apt-get purge -y --auto-remove curl gnupg; \
    rm -rf /var/lib/apt/lists/*

# Fixed numeric ids: Kubernetes' runAsNonRoot can only verify a numeric USER.
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /home/app --create-home --shell /usr/sbin/nologin app

COPY --from=build /opt/venv /opt/venv

WORKDIR /opt/clientes-ingest
# What runs from the working directory: the flow entrypoints named in prefect.yaml (pull step
# set_working_directory), the work-pool job template, the DDL.
COPY prefect.yaml ./
COPY flows ./flows
COPY deployments ./deployments
COPY sql ./sql

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/app \
    CLIENTES_PROJECT_DIR=/opt/clientes-ingest

USER 10001:10001

# clientes-ingest-api / clientes-ingest-trigger
EXPOSE 8000 9100

CMD ["clientes-ingest", "--help"]
