# cnn-visualiser: the web app and REST API on a slim Python, as a non-root user.
#   docker build -t cnn-visualiser .
#   docker run -p 8000:8000 -v cnn-vis-data:/data cnn-visualiser
# Without a Docker engine, scripts/check_docker_steps.sh runs the same steps in a fresh virtual environment.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CNN_VIS_DATA_DIR=/data \
    CNN_VIS_HOST=0.0.0.0 \
    CNN_VIS_PORT=8000

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin cnnvis

# Only the runtime dependencies from pyproject.toml (no test tools); sources are removed after install.
# Swagger UI's files (app/docs_assets, for an offline /docs) are package data of `app`.
COPY pyproject.toml README.md /src/
COPY engine /src/engine
COPY app /src/app
RUN pip install /src && rm -rf /src

# The front-end is served from the working directory's static/ and templates/.
WORKDIR /srv/cnn-visualiser
COPY static ./static
COPY templates ./templates

# Convert the pretrained EfficientNet weights once, at build time, into the data directory's cache.
RUN mkdir -p /data \
    && python -m engine.models.registry prepare --cache-dir /data/cache \
    && chown -R cnnvis:cnnvis /data

USER cnnvis
VOLUME ["/data"]
EXPOSE 8000

# slim has no curl: ask the API with Python's standard library
HEALTHCHECK --interval=30s --timeout=5s --start-period=40s --retries=3 \
    CMD python -c "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/api/health', timeout=4).status == 200 else 1)"

CMD ["cnn-visualiser", "serve", "--host", "0.0.0.0"]
