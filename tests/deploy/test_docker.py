"""The Dockerfiles (not built here: no Docker engine on CI) parse and keep the rules we rely on."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def final_stage(path: Path) -> list[tuple[str, str]]:
    ins = instructions(path)
    last_from = max(i for i, (w, _) in enumerate(ins) if w == "FROM")
    return ins[last_from:]


@pytest.mark.parametrize("name", ["serve.Dockerfile", "train.Dockerfile"])
def test_images_are_pinned_non_root_with_an_exec_entrypoint(name):
    ins = instructions(DOCKER / name)
    for word, arg in ins:
        if word == "FROM":
            image = arg.split()[0]
            assert re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+-[\w.-]+(@sha256:[0-9a-f]{64})?", image), image
    final = final_stage(DOCKER / name)
    users = [arg for word, arg in final if word == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    entry = [arg for word, arg in final if word == "ENTRYPOINT"]
    assert entry and json.loads(entry[-1])[0] == "python"
    assert any(w == "RUN" and "torch==2.13.0" in a for w, a in ins)


def test_serving_image_runs_nexus_serve_on_8080_with_a_health_check():
    final = dict((w, a) for w, a in final_stage(DOCKER / "serve.Dockerfile"))
    assert json.loads(final["CMD"]) == [
        "nexus",
        "serve",
        "/opt/ml/model",
        "--host",
        "0.0.0.0",
        "--port",
        "8080",
    ]
    assert json.loads(final["ENTRYPOINT"]) == ["python", "-m", "nexus_llm.deploy.fetch_model", "--"]
    assert "/health" in final["HEALTHCHECK"] and "--start-period=" in final["HEALTHCHECK"]
    assert final["EXPOSE"] == "8080"


def test_training_image_follows_the_sagemaker_contract():
    final = final_stage(DOCKER / "train.Dockerfile")
    entry = json.loads(dict(final)["ENTRYPOINT"])
    assert entry == ["python", "-m", "nexus_llm.train.sagemaker"]
    run = " ".join(a for w, a in final if w == "RUN")
    assert "/opt/ml/checkpoints" in run and "/opt/ml/model" in run and "chown -R nexus:nexus /opt/ml" in run


def test_entrypoint_modules_exist():
    import importlib.util

    for module in ("nexus_llm.train.sagemaker", "nexus_llm.deploy.fetch_model"):
        assert importlib.util.find_spec(module) is not None, module


# checkov's Dockerfile checks run in test_stacks.py, in the same checkov process as the templates'.
