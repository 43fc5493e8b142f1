# funnel serve on the embedded engine (Qdrant Edge), CPU build of torch, installed from the wheel.
# UNTESTED HERE: no Docker engine runs on the development machines; written from the Docker and
# uvicorn docs. The wheel is built from the same files, the same way, as scripts/smoke-installed
# builds and tests it (pip wheel --no-deps . from pyproject.toml, README.md, retriever/, tuner/).
# Build: docker build -t funnel .   Run: see docker-compose.yml (service "funnel").

# --- build stage: the wheel, nothing else -------------------------------------------------------
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY retriever ./retriever
COPY tuner ./tuner
RUN pip wheel --no-deps --wheel-dir /dist .

# --- final stage: torch (CPU) first, then the wheel; no source tree in the image ---------------
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    FUNNEL_HOME=/data

# torch first, from the CPU wheel index (a bare "torch" pulls GBs of CUDA packages).
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"
COPY --from=build /dist /tmp/dist
RUN pip install /tmp/dist/funnel_retriever-*.whl && rm -rf /tmp/dist

# Collections (and the feedback JSONL files) live on a volume; one process owns a collection.
RUN useradd --create-home --uid 10001 funnel && mkdir -p /data && chown funnel:funnel /data
USER funnel
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000

# Inside the container the service must listen on 0.0.0.0; publish the port on 127.0.0.1 (compose
# does) and set FUNNEL_API_KEY. FUNNEL_COLLECTION names the collection to serve.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz').status == 200 else 1)"
ENTRYPOINT ["funnel"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
