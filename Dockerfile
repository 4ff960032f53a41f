# syntax=docker/dockerfile:1
# emwatch service image: `docker compose up` runs it with Mosquitto and PostgreSQL (docker-compose.yml).

FROM python:3.11-slim AS builder
WORKDIR /src
RUN pip install --no-cache-dir build
COPY pyproject.toml README.md ./
COPY src ./src
COPY device_sim ./device_sim
# The project's wheel plus wheels of all its dependencies, so the runtime stage installs offline.
RUN python -m build --wheel --outdir /dist \
    && pip wheel --no-cache-dir --wheel-dir /wheels /dist/emwatch-*.whl

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    EMWATCH_HTTP_HOST=0.0.0.0 \
    EMWATCH_HTTP_PORT=8000 \
    EMWATCH_DATA_DIR=/var/lib/emwatch \
    NUMBA_CACHE_DIR=/opt/emwatch/numba-cache
# GNU OpenMP: numba's thread pool for the hot path's split kernels (emwatch/kernel_threads.py).
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/emwatch --create-home emwatch
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels emwatch
# Compile the numba kernels (geo/h3_kernel.py, ingest/packed.py, ...) into the image: a container then
# starts without ~10 s of compiling per kernel. numba only uses a cache it can write: the service user owns it.
RUN python -c "import emwatch.pipeline" && chown -R emwatch:emwatch /opt/emwatch/numba-cache
USER emwatch
WORKDIR /var/lib/emwatch
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('EMWATCH_HTTP_PORT', '8000'); sys.exit(urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=3).status != 200)"]
CMD ["emwatch", "serve"]
