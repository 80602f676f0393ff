# Tracking-plan gateway image.
#
#   docker build -t tracking-gateway .
#   docker run -p 8080:8080 -p 8081:8081 \
#     -v "$PWD/gateway.toml:/etc/gateway/gateway.toml:ro" tracking-gateway
#
# The config is read from /etc/gateway/gateway.toml (see config.example.toml); every setting
# can also be given as a GATEWAY_<SECTION>_<KEY> environment variable. State (the persisted
# plan snapshot, a SQLite catalog) belongs under /var/lib/gateway, the only writable directory:
# point plans.cache_dir and catalog.database_url there with absolute paths.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Only what the package build needs (there is no .dockerignore, so copy explicitly).
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway/ gateway/

# The runtime package only: no dev/test extras (no embedded broker, no test tools).
RUN pip install --no-cache-dir --root-user-action=ignore . \
    && cd / && rm -rf /src

# An unprivileged user with a numeric id (so runAsNonRoot can verify it) and its state dir.
RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid gateway --home-dir /var/lib/gateway \
       --no-create-home --shell /usr/sbin/nologin gateway \
    && mkdir -p /etc/gateway /var/lib/gateway \
    && chown gateway:gateway /var/lib/gateway

WORKDIR /var/lib/gateway
USER 10001:10001
VOLUME ["/var/lib/gateway"]

# 8080: ingest API (SDKs). 8081: admin API, /metrics, /health/*.
EXPOSE 8080 8081

# Liveness over whichever listener this role runs (ingest: 8080, admin: 8081); slim has no curl.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request\nfor port in (8080, 8081):\n    try:\n        urllib.request.urlopen(f'http://127.0.0.1:{port}/health/live', timeout=3)\n        sys.exit(0)\n    except OSError:\n        pass\nsys.exit(1)"]

# SIGTERM (docker stop) drains in-flight requests and flushes the producer before exiting.
STOPSIGNAL SIGTERM
ENTRYPOINT ["gateway"]
CMD ["serve", "--config", "/etc/gateway/gateway.toml"]
