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

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    INGESTOR_LOG_FORMAT=json

COPY --from=builder /install /usr/local

RUN groupadd --gid 10001 ingestor \
    && useradd --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin ingestor

USER 10001:10001

STOPSIGNAL SIGTERM

# /metrics, /healthz, /readyz (INGESTOR_METRICS_PORT)
EXPOSE 9108

HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["python", "-m", "ingestor", "check"]

ENTRYPOINT ["python", "-m", "ingestor"]
CMD ["run"]
