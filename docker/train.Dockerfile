# Training image for SageMaker: `python -m nexus_llm.deploy.entrypoints.sagemaker_train` (SageMaker runs `<image> train`;
# the entrypoint ignores that argument). It reads the channels under /opt/ml/input/data, the
# hyperparameters in /opt/ml/input/config/hyperparameters.json, writes the model to /opt/ml/model
# (SM_MODEL_DIR) and checkpoints to /opt/ml/checkpoints, which SageMaker syncs with CheckpointConfig.S3Uri.
#
#   docker build -f docker/train.Dockerfile -t <account>.dkr.ecr.<region>.amazonaws.com/<project>/train:0.1.0 .
#
# torch's PyPI wheels for Linux carry CUDA; the GPU driver comes from the SageMaker host.
# The base image is pinned by exact version; pin it by digest too when you mirror it.
#
# It runs as root, unlike the serving image: SageMaker bind-mounts /opt/ml/model, /opt/ml/checkpoints
# and /opt/ml/output from the host, root-owned, over whatever the image prepared there, so a non-root
# user cannot write the model, checkpoints or failure file (aws/sagemaker-python-sdk#4764). An
# entrypoint that chowns the mounts and then drops privileges was considered: it still starts as root
# (so checkov's rule is not met either), and it adds a privilege-switching step to maintain for little
# gain, since the SageMaker instance runs this one job and nothing else. SageMaker's own framework
# images (the PyTorch training containers) run as root for the same reason.

# checkov:skip=CKV_DOCKER_2: a training job is a batch process with no port to probe; SageMaker watches the process exit code
# checkov:skip=CKV_DOCKER_3: root on purpose (see above): SageMaker mounts /opt/ml/{model,checkpoints,output} root-owned from the host, so a non-root user cannot write them (aws/sagemaker-python-sdk#4764)
FROM python:3.11.13-slim-bookworm AS build
ARG TORCH_INDEX_URL=https://pypi.org/simple
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY src ./src
# only the training extra (model libraries, accelerate, peft, mlflow-skinny ...): tokenizing a curated
# channel needs the tokenizer code, which uses nothing beyond the model extra; no Spark, lm-eval, nor
# the MLflow server stack (Flask, SQLAlchemy, gunicorn): runs log to an MLflow server over HTTP
RUN pip install --index-url "${TORCH_INDEX_URL}" torch==2.13.0 \
 && pip install -c constraints.txt ".[train]" \
 && find /opt/venv -name "__pycache__" -prune -exec rm -rf {} +

FROM python:3.11.13-slim-bookworm
LABEL org.opencontainers.image.title="nexus-llm train"
RUN mkdir -p /opt/ml/input/data /opt/ml/input/config /opt/ml/model /opt/ml/output/data \
             /opt/ml/checkpoints /opt/ml/code
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HOME=/tmp/hf \
    HF_HUB_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    SM_MODEL_DIR=/opt/ml/model
WORKDIR /opt/ml/code
ENTRYPOINT ["python", "-m", "nexus_llm.deploy.entrypoints.sagemaker_train"]
