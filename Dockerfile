# CoursePulse image: the `coursepulse` command (worker, topics, simulate, schemas, demo).
#
#   docker build -t coursepulse:0.1.0 .
#   docker run --rm coursepulse:0.1.0 --help
#
# Two stages: the builder installs the package (with the RocksDB store, `rocksdict`) into a
# virtualenv and has a compiler at hand in case a dependency has no wheel for the build platform;
# the runtime stage only copies that virtualenv.

FROM python:3.11-slim AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# Only what the package build needs (no .git, var/, tests). README* may be absent.
COPY pyproject.toml README* ./
COPY streams ./streams
COPY agents ./agents
COPY models ./models
COPY schemas ./schemas
COPY tools ./tools
RUN pip install --upgrade pip setuptools wheel \
    && pip install ".[rocksdb]"


FROM python:3.11-slim

LABEL org.opencontainers.image.title="coursepulse" \
      org.opencontainers.image.description="CoursePulse stream-processing worker (Faust, River, Numba)" \
      org.opencontainers.image.licenses="Apache-2.0"

# Non-root user; the RocksDB data dir is created here and owned by it, so a fresh Docker volume
# (compose) mounted on it inherits that ownership. In Kubernetes, fsGroup does the same for PVCs.
RUN groupadd --system --gid 10001 coursepulse \
    && useradd --system --uid 10001 --gid coursepulse --create-home --home-dir /home/coursepulse coursepulse \
    && mkdir -p /var/lib/coursepulse \
    && chown coursepulse:coursepulse /var/lib/coursepulse

COPY --from=builder /opt/venv /opt/venv

# Image defaults for a containerised worker; every COURSEPULSE_* variable is a field of
# streams/settings.py and can be overridden by compose / the k8s ConfigMap.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    COURSEPULSE_STORE=rocksdb:// \
    COURSEPULSE_DATA_DIR=/var/lib/coursepulse \
    COURSEPULSE_WEB_HOST=0.0.0.0 \
    COURSEPULSE_WEB_PORT=6066

USER coursepulse
WORKDIR /home/coursepulse

# Worker HTTP server: /livez, /readyz, /healthz, /metrics (Prometheus), /stats.
EXPOSE 6066

# No curl in slim images: probe /readyz (partitions assigned, tables recovered, broker reachable)
# with the interpreter. Only meaningful for `worker`;
# compose disables it for the one-shot `topics` and the `simulator` (Kubernetes ignores it and
# uses the probes of the StatefulSet).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('COURSEPULSE_WEB_PORT') or '6066'; sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/readyz', timeout=4).status == 200 else 1)"]

# Exec form: coursepulse is PID 1 and receives SIGTERM, so Faust stops cleanly (commits offsets,
# closes RocksDB, leaves the consumer group).
ENTRYPOINT ["coursepulse"]
CMD ["worker"]
