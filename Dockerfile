# ---- builder: build the wheel and install it (with its dependencies) under /install
FROM python:3.11-slim AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /src

# Only what the build needs; everything else stays out of the image.
COPY pyproject.toml README.md ./
COPY ingestor/ ./ingestor/

RUN pip install --no-cache-dir --prefix=/install .

# ---- runtime: plain slim Python, no compilers, no pip cache, no sources
FROM python:3.11-slim

# INGESTOR_METRICS_PORT serves /metrics, /healthz and /readyz (0 turns the server off).
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    INGESTOR_LOG_FORMAT=json \
    INGESTOR_METRICS_PORT=9108

COPY --from=builder /install /usr/local

RUN groupadd --gid 10001 ingestor \
    && useradd --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin ingestor

USER 10001:10001

EXPOSE 9108

# The service hands back what it cannot commit within INGESTOR_SHUTDOWN_TIMEOUT (30 s) after
# SIGTERM: give it more than that before the kill (docker stop -t 40, stop_grace_period).
STOPSIGNAL SIGTERM

# Healthy = the running process says it is ready (queue and database answer, schema
# migrated). There is no curl in the slim image: Python's urllib does the request, and an
# HTTP 503 raises, so the exit status is non-zero. With INGESTOR_METRICS_PORT=0 override
# this with CMD ["python", "-m", "ingestor", "check"] (a separate, heavier check).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('INGESTOR_METRICS_PORT', '9108') + '/readyz', timeout=4)"]

ENTRYPOINT ["python", "-m", "ingestor"]
CMD ["run"]
