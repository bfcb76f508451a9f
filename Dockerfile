# syntax=docker/dockerfile:1
#
# did-monitor as a long-running service: `docker run ... did-monitor` runs `did-monitor run`,
# which migrates the database, then sweeps on the configured schedule until SIGTERM.
#
#   docker build -t did-monitor .
#   docker run -d --name did-monitor \
#     -v did-monitor-data:/data \
#     -v "$PWD/config.toml:/config/config.toml:ro" \
#     -p 127.0.0.1:9108:9108 did-monitor
#
# Configuration (see config.example.toml):
#   DID_MONITOR_CONFIG    where the config file is read: /config/config.toml. Mount it there; it
#                         must exist. Every key can also be set with DID_MONITOR__SECTION__KEY
#                         variables, which win over the file.
#   /data                 the working directory and a volume: the default database,
#                         sqlite:///did-monitor.db, lives at /data/did-monitor.db.
#   Secrets               prefer vobiz.auth_token_file (DID_MONITOR__VOBIZ__AUTH_TOKEN_FILE) pointing
#                         at a mounted secret, e.g. /run/secrets/vobiz_auth_token, over a token in
#                         the environment.
#   Health                DID_MONITOR__SERVICE__HEALTH_LISTEN=0.0.0.0:9108 is set below so the
#                         HEALTHCHECK has /healthz to ask; /readyz, /metrics (Prometheus) and the
#                         read-only dashboard (/) are served there too. Change the port with that
#                         variable (the HEALTHCHECK follows it); environment variables win over the
#                         config file's service.health_listen, and a config that also sets a
#                         different dashboard.listen is refused (exit 2): leave that key unset.
#                         Publish it on loopback (as above) or give the dashboard a password:
#                         dashboard.username plus dashboard.password_file at a mounted secret.
#   Shutdown              on SIGTERM the running sweep is aborted and rolled back within
#                         service.shutdown_timeout_seconds (30 s by default): give the container
#                         a longer stop timeout (`docker stop -t 45`, compose stop_grace_period).

# --- builder: build the wheel and install it, with its dependencies, into /install -----------
FROM python:3.11-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY monitor ./monitor
COPY migrations ./migrations
RUN pip wheel --wheel-dir /wheels . \
 && pip install --prefix=/install --no-index --find-links=/wheels did-monitor

# --- runtime: the slim interpreter, the installed package, no build tools --------------------
FROM python:3.11-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DID_MONITOR_CONFIG=/config/config.toml \
    DID_MONITOR__SERVICE__HEALTH_LISTEN=0.0.0.0:9108
RUN groupadd --system --gid 10001 monitor \
 && useradd --system --uid 10001 --gid monitor --home-dir /data --no-create-home \
      --shell /usr/sbin/nologin monitor \
 && mkdir -p /data /config \
 && chown monitor:monitor /data
COPY --from=builder /install /usr/local
WORKDIR /data
VOLUME /data
# A numeric user, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
EXPOSE 9108
# No curl in the slim image: ask /healthz with the standard library (bypassing any HTTP proxy
# set in the environment). It raises on a 503, so the check fails when the service is unhealthy
# or not listening.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request as u; port = os.environ.get('DID_MONITOR__SERVICE__HEALTH_LISTEN', '9108').rpartition(':')[2]; u.build_opener(u.ProxyHandler({})).open(f'http://127.0.0.1:{port}/healthz', timeout=4)"]
ENTRYPOINT ["did-monitor"]
CMD ["run"]
