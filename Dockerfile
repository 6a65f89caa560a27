# MgCDS service image: builds the package into wheels, installs them into a clean python:3.11-slim, and runs
# `mgcds serve` (gunicorn inside) as a non-root user. Validated by tests/unit/test_docker_compose.py; not built
# in this project's CI (no Docker engine there).
FROM python:3.11-slim AS build
WORKDIR /src
COPY . /src
RUN pip install --no-cache-dir --upgrade pip \
 && pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MGCDS_HOST=0.0.0.0 \
    MGCDS_PORT=8080 \
    MGCDS_INSTANCE_PATH=/var/lib/mgcds
# A fixed numeric uid so volume permissions and `runAsNonRoot` policies work the same everywhere.
RUN groupadd --system --gid 10001 mgcds \
 && useradd --system --uid 10001 --gid mgcds --home-dir /var/lib/mgcds --create-home --shell /usr/sbin/nologin mgcds
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels mgcds && rm -rf /wheels
USER 10001:10001
WORKDIR /var/lib/mgcds
EXPOSE 8080
# The slim image has no curl: the probe is a few lines of the Python that is already there.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"]
CMD ["mgcds", "serve"]
