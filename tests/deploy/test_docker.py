"""The Dockerfiles (not built here: no Docker engine on CI) parse and keep the rules we rely on, and
the code each image runs imports with only the extra that image installs."""

from __future__ import annotations

import importlib.metadata as metadata
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

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


def installed_extras(path: Path) -> list[str]:
    """The extras of the one `pip install ... ".[extra,...]"` of the project in the build stage."""
    found = [m for w, a in instructions(path) if w == "RUN" for m in re.findall(r'"\.\[([\w,]+)\]"', a)]
    assert len(found) == 1, found
    return found[0].split(",")


@pytest.mark.parametrize("name", ["serve.Dockerfile", "train.Dockerfile"])
def test_images_are_pinned_with_an_exec_entrypoint(name):
    ins = instructions(DOCKER / name)
    for word, arg in ins:
        if word == "FROM":
            image = arg.split()[0]
            assert re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+-[\w.-]+(@sha256:[0-9a-f]{64})?", image), image
    entry = [arg for word, arg in final_stage(DOCKER / name) if word == "ENTRYPOINT"]
    assert entry and json.loads(entry[-1])[0] == "python"
    assert any(w == "RUN" and "torch==2.13.0" in a and "-c constraints.txt" in a for w, a in ins)


def test_images_install_only_their_own_extra():
    assert installed_extras(DOCKER / "serve.Dockerfile") == ["serve"]
    assert installed_extras(DOCKER / "train.Dockerfile") == ["train"]


def test_serving_image_runs_nexus_serve_on_8080_as_a_non_root_user_with_a_health_check():
    final = final_stage(DOCKER / "serve.Dockerfile")
    users = [arg for word, arg in final if word == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    final = dict(final)
    assert json.loads(final["CMD"]) == [
        "nexus",
        "serve",
        "/opt/ml/model",
        "--host",
        "0.0.0.0",
        "--port",
        "8080",
    ]
    assert json.loads(final["ENTRYPOINT"]) == [
        "python",
        "-m",
        "nexus_llm.deploy.entrypoints.fetch_model",
        "--",
    ]
    assert "/health" in final["HEALTHCHECK"] and "--start-period=" in final["HEALTHCHECK"]
    assert final["EXPOSE"] == "8080"


def test_training_image_follows_the_sagemaker_contract_as_root():
    """SageMaker bind-mounts /opt/ml/{model,checkpoints,output} root-owned from the host, so the job
    runs as root (aws/sagemaker-python-sdk#4764); the checkov skip says so."""
    final = final_stage(DOCKER / "train.Dockerfile")
    entry = json.loads(dict(final)["ENTRYPOINT"])
    assert entry == ["python", "-m", "nexus_llm.deploy.entrypoints.sagemaker_train"]
    assert [arg for word, arg in final if word == "USER"] in ([], ["root"], ["0"])
    run = " ".join(a for w, a in final if w == "RUN")
    assert "/opt/ml/checkpoints" in run and "/opt/ml/model" in run
    text = (DOCKER / "train.Dockerfile").read_text(encoding="utf-8")
    skip = re.search(r"# checkov:skip=CKV_DOCKER_3: (.+)", text)
    assert skip and "sagemaker-python-sdk#4764" in skip.group(1)


# --- what an image with only its extra can import ---------------------------------------------------


def _requirements(dist: metadata.Distribution, extras: set[str]) -> list[Requirement]:
    out = []
    for line in dist.requires or []:
        req = Requirement(line)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in extras | {""}):
            out.append(req)
    return out


def closure(extras: list[str]) -> set[str]:
    """Installed distributions that `pip install ".[extras]"` pulls in (project extras from
    pyproject.toml, the rest from each installed package's metadata)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    optional = project["optional-dependencies"]
    todo: list[Requirement] = [Requirement(r) for r in project["dependencies"]]
    seen_extras: set[str] = set()
    pending = list(extras)
    while pending:
        extra = pending.pop()
        if extra in seen_extras:
            continue
        seen_extras.add(extra)
        for line in optional[extra]:
            req = Requirement(line)
            if canonicalize_name(req.name) == canonicalize_name(project["name"]):
                pending.extend(req.extras)
            else:
                todo.append(req)
    found: dict[str, set[str]] = {}
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in found and req.extras <= found[name]:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional platform package this machine lacks; the image would have it
        found[name] = found.get(name, set()) | set(req.extras)
        todo.extend(_requirements(dist, found[name]))
    return set(found)


def site_view(dists: set[str], root: Path) -> Path:
    """A directory holding links to exactly these distributions' files (top-level entries)."""
    root.mkdir()
    for dist in metadata.distributions():
        if canonicalize_name(dist.metadata["Name"]) not in dists or not dist.files:
            continue
        for top in {f.parts[0] for f in dist.files if f.parts[0] not in ("..", "__pycache__")}:
            source = Path(dist.locate_file(top))
            if source.exists() and not (root / top).exists():
                (root / top).symlink_to(source)
    return root


IMAGE_CODE = {
    # what `nexus serve` and the fetch step load; a module that needs another extra would fail here
    "serve": (
        "import nexus_llm.cli, nexus_llm.deploy.entrypoints.fetch_model, nexus_llm.serve.http.server, nexus_llm.serve.http.app, "
        "nexus_llm.serve.engine.batching, nexus_llm.serve.engine.loading",
        ["pyspark", "mlflow", "lm_eval", "boto3"],
    ),
    # the SageMaker entrypoint, the training loop and the tokenizer it runs on a curated channel
    "train": (
        "import nexus_llm.deploy.entrypoints.sagemaker_train, nexus_llm.train.loop, nexus_llm.tokenizer.bpe, "
        "nexus_llm.tokenizer.encode, nexus_llm.tokenizer.curated",
        ["pyspark", "ftfy", "lm_eval", "troposphere", "flask", "sqlalchemy"],
    ),
    # the local curation engine (Glue installs the data stage's modules itself, see deploy/data_job.py)
    "data": (
        "import nexus_llm.cli, nexus_llm.data.prepare, nexus_llm.data.local, nexus_llm.data.dedup, "
        "nexus_llm.data.clean",
        ["pyspark", "torch", "mlflow"],
    ),
}


def extras_of(kind: str) -> list[str]:
    """The extras an image installs (from its Dockerfile); ``data`` has no image, only its extra."""
    return ["data"] if kind == "data" else installed_extras(DOCKER / f"{kind}.Dockerfile")


def test_extras_hold_only_what_their_stage_runs():
    """The training image logs to MLflow with mlflow-skinny: no Flask/SQLAlchemy server stack; the data
    extra has no Spark; torch is not pinned by the package (constraints.txt pins it)."""
    train = closure(["train"])
    assert "mlflow-skinny" in train and not train & {"mlflow", "flask", "sqlalchemy", "alembic", "gunicorn"}
    assert not closure(["data"]) & {"pyspark", "py4j", "torch"}
    optional = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]
    names = {k: {canonicalize_name(Requirement(r).name) for r in v} for k, v in optional.items()}
    assert {"uvicorn", "uvloop", "httptools"} <= names["serve"]
    assert "deepspeed" in names["deepspeed"] and "vllm" in names["vllm"]
    torch = [Requirement(r) for r in optional["model"] if Requirement(r).name == "torch"]
    assert torch and not any(s.operator == "==" for s in torch[0].specifier)
    pins = (REPO / "constraints.txt").read_text(encoding="utf-8").splitlines()
    assert "torch==2.13.0" in pins and not [p for p in pins if p.startswith("datasketch")]


@pytest.mark.parametrize("extra", ["serve", "train", "data"])
def test_image_code_imports_with_only_its_extra(extra, tmp_path):
    imports, absent = IMAGE_CODE[extra]
    view = site_view(closure(extras_of(extra)), tmp_path / "site")
    probe = (
        f"{imports}\n"
        "import importlib.util\n"
        f"missing = [m for m in {absent!r} if importlib.util.find_spec(m) is None]\n"
        f"assert missing == {absent!r}, missing\n"
        "print('ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = os.pathsep.join([str(view), str(REPO / "src")])
    # -S: no site-packages, so only the view (and the standard library) can be imported
    proc = subprocess.run(
        [sys.executable, "-S", "-c", probe], env=env, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


def test_entrypoint_modules_exist():
    import importlib.util

    for module in (
        "nexus_llm.deploy.entrypoints.sagemaker_train",
        "nexus_llm.deploy.entrypoints.fetch_model",
    ):
        assert importlib.util.find_spec(module) is not None, module


# checkov's Dockerfile checks run in test_stacks.py, in the same checkov process as the templates'.
