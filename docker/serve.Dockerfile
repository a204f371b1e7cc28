# Serving image: `nexus serve` on port 8080, the model fetched from NEXUS_MODEL_URI at start.
#
#   docker build -f docker/serve.Dockerfile -t <account>.dkr.ecr.<region>.amazonaws.com/<project>/serve:0.1.0 .
#
# torch comes from PyPI by default: its Linux wheels carry CUDA, so one image runs on the GPU hosts
# (driver from the ECS GPU AMI) and on CPU. For a smaller CPU-only (Fargate) image add
#   --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# The base image is pinned by exact version; pin it by digest too (python:3.11.13-slim-bookworm@sha256:...)
# when you mirror it into your registry.

FROM python:3.11.13-slim-bookworm AS build
ARG TORCH_INDEX_URL=https://pypi.org/simple
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY src ./src
# only the serving extra (torch, transformers, fastapi, uvicorn with uvloop and httptools ...): no Spark,
# mlflow or lm-eval
RUN pip install --index-url "${TORCH_INDEX_URL}" torch==2.13.0 \
 && pip install -c constraints.txt ".[serve]" \
 && find /opt/venv -name "__pycache__" -prune -exec rm -rf {} +

FROM python:3.11.13-slim-bookworm
LABEL org.opencontainers.image.title="nexus-llm serve"
RUN groupadd --system --gid 1000 nexus \
 && useradd --system --uid 1000 --gid nexus --create-home --home-dir /home/nexus nexus \
 && mkdir -p /opt/ml/model \
 && chown -R nexus:nexus /opt/ml
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HOME=/tmp/hf \
    HF_HUB_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false
USER 1000:1000
WORKDIR /home/nexus
EXPOSE 8080
# 200 only once the model is loaded; the start period covers the download and the load.
HEALTHCHECK --interval=30s --timeout=5s --start-period=600s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4)"]
ENTRYPOINT ["python", "-m", "nexus_llm.deploy.entrypoints.fetch_model", "--"]
CMD ["nexus", "serve", "/opt/ml/model", "--host", "0.0.0.0", "--port", "8080"]
