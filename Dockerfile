# One image for every process: `dataapi api`, `dataapi worker --queues queries|jobs|callbacks`,
# `dataapi db upgrade`, `dataapi temporal setup`, and the admin commands (`dataapi companies create ...`).
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Only what the package is built from (see .dockerignore), so unrelated edits do not invalidate the layer.
COPY pyproject.toml ./
COPY dataapi ./dataapi
COPY api ./api
COPY activities ./activities
COPY workflows ./workflows
COPY cli ./cli
COPY worker.py ./
RUN python -m venv /opt/dataapi && /opt/dataapi/bin/pip install .

FROM python:3.11-slim

ENV PATH=/opt/dataapi/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DATAAPI_VAR_DIR=/var/lib/dataapi \
    DATAAPI_API_HOST=0.0.0.0 \
    DATAAPI_API_PORT=3100

# A fixed non-root uid; the state folders exist (owned by it) so that named volumes mounted there inherit it.
RUN groupadd --system --gid 10001 dataapi \
 && useradd --system --uid 10001 --gid dataapi --home-dir /var/lib/dataapi --shell /usr/sbin/nologin dataapi \
 && mkdir -p /var/lib/dataapi/data /var/lib/dataapi/work \
 && chown -R dataapi:dataapi /var/lib/dataapi

COPY --from=build /opt/dataapi /opt/dataapi

USER dataapi
WORKDIR /var/lib/dataapi
EXPOSE 3100

# Liveness of the API (the default command); worker services override it (see docker-compose.yml).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('DATAAPI_API_PORT', '3100'), timeout=4)"]

ENTRYPOINT ["dataapi"]
CMD ["api"]
