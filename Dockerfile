# One image for every process of the service: docker-compose.yml and deploy/k8s/ run it with a
# different command (`api`, `worker`, `scheduler`, `migrate`, `token create`, ...).
#   docker build -t bipn-monitor:latest .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY policies ./policies
COPY monitor ./monitor
COPY workers ./workers
COPY examples ./examples

# The same package the README's commands install, with the OTLP trace exporter (the `otlp`
# extra), nothing else; then a non-root user (uid 10001, group 0 so that platforms running an
# arbitrary uid in group 0 can still write /app/var).
RUN pip install '.[otlp]' \
    && rm -rf build ./*.egg-info \
    && useradd --system --uid 10001 --gid 0 --home-dir /app --no-create-home monitor \
    && mkdir -p /app/var \
    && chown 10001:0 /app/var \
    && chmod 0775 /app/var

# The embedded mode (`serve` without MONITOR_* settings) keeps its SQLite file under /app/var;
# the production processes keep nothing on disk.
USER 10001
EXPOSE 8000
ENTRYPOINT ["python", "-m", "monitor"]
# Default: the embedded all-in-one service. Compose and Kubernetes give each process its command.
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
