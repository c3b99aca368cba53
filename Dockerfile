# syntax=docker/dockerfile:1
#
# The rater worker image (SPEC §10).
#
#   docker build -t rater .
#   docker run --rm -p 6066:6066 -e RATER_KAFKA_BOOTSTRAP=kafka:9092 \
#       -e RATER_REDIS_URL=redis://redis:6379/0 rater            # = rater worker
#   docker run --rm rater topics create                           # other subcommands
#
# Stage 1 builds the project and its dependencies into a virtualenv; stage 2
# copies only that virtualenv onto a clean python:3.11-slim, so the final
# image has no compilers, no pip cache and no sources besides the package.
ARG PYTHON_IMAGE=python:3.11-slim

# ------------------------------------------------------------------ builder ---
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# Every dependency ships manylinux wheels; should one ever need compiling,
# install build-essential here (this stage only), never in the final stage.
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY pyproject.toml ./
COPY rater ./rater
COPY schemas ./schemas

# Build a wheel, then install it (not editable) with its dependencies.
RUN pip wheel --no-deps --wheel-dir /tmp/wheels . \
 && pip install /tmp/wheels/rater-*.whl \
 && rm -rf /tmp/wheels

# The record schemas must sit next to the package once installed
# (rater/records/schemas.py falls back to <package>/schemas); add them when the wheel
# does not carry them, then prove the installed package finds them (-P: not
# the source tree in the working directory).
RUN pkg="$(python -c 'import pathlib, rater; print(pathlib.Path(rater.__file__).parent)')" \
 && if [ ! -d "$pkg/schemas" ]; then cp -r /src/schemas "$pkg/schemas"; fi \
 && python -P -c "from rater.records.schemas import load_schema; load_schema('cdr')" \
 && rater --help > /dev/null

# ------------------------------------------------------------------ runtime ---
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="rater" \
      org.opencontainers.image.description="Real-time usage rater for telephony billing"

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    RATER_WEB_HOST=0.0.0.0 \
    RATER_WEB_PORT=6066 \
    RATER_DATA_DIR=/var/lib/rater

RUN groupadd --system --gid 10001 rater \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/rater \
        --no-create-home --shell /usr/sbin/nologin rater \
 && mkdir -p /var/lib/rater \
 && chown 10001:10001 /var/lib/rater

COPY --from=builder /opt/venv /opt/venv

WORKDIR /var/lib/rater
USER 10001:10001

EXPOSE 6066

# Liveness of the web server on RATER_WEB_PORT; urlopen raises (exit 1) on
# any non-2xx answer or connection error.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('RATER_WEB_PORT', '6066'), timeout=2)"]

ENTRYPOINT ["rater"]
CMD ["worker"]
