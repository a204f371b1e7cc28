"""Each stage's extra, installed by pip into an empty virtual environment, runs that stage.

This is what a user or an image does (`pip install 'nexus-llm[serve]'`): a wheel of this checkout is
built, and each extra goes into its own new venv with the pinned versions (`-c constraints.txt`) and
nothing else — torch first, as `make setup` and the Dockerfiles do, so that the CPU build is the one
installed. Then the stage runs there as a user would run it:

- ``serve``: ``nexus serve`` answers ``/generate`` on a model directory, with uvloop and httptools;
- ``data``: ``nexus data prepare`` curates with the local engine, and pyspark (and torch) are absent;
- ``train``: ``nexus train`` trains and exports a model, and neither Flask nor SQLAlchemy (the MLflow
  server stack) is installed.

pip needs PyPI or a warm pip cache (about a minute per extra with a warm cache, on 2 cores). The venvs
are installed with ``--no-compile``: byte-compiling every installed module is most of pip's time here
(torch alone: 46 s with it, 16 s without, on 2 cores), and Python compiles what a stage imports anyway.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

pytestmark = [pytest.mark.install, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
TORCH = "torch==2.13.0"  # the CPU build on this machine's index; constraints.txt pins the same release


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without anything that would let the venv see the project's .venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return {**env, "HF_HUB_OFFLINE": "1", "NO_COLOR": "1", **extra}


def _run(args: list, timeout: float = 900, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("env", clean_env())  # no PYTHONPATH: pip would count this checkout as installed
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, **kw)
    assert proc.returncode == 0, f"{' '.join(map(str, args))}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel of this checkout, built from a copy (a build in place would leave build/ behind)."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src-copy"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", root / "dist", src], env=None)
    (found,) = (root / "dist").glob("nexus_llm-*.whl")
    return found


def make_venv(root: Path, wheel: Path, extra: str, torch: bool) -> Path:
    """A new venv holding only ``nexus-llm[extra]`` and what it requires; returns its bin directory."""
    venv = root / f"venv-{extra}"
    _run([sys.executable, "-m", "venv", venv])
    pip = [
        venv / "bin" / "python",
        "-m",
        "pip",
        "install",
        "-q",
        "--no-compile",
        "--disable-pip-version-check",
    ]
    if torch:
        _run([*pip, TORCH])
    _run([*pip, "-c", REPO / "constraints.txt", f"{wheel}[{extra}]"])
    return venv / "bin"


def installed(bin_dir: Path) -> set[str]:
    proc = _run([bin_dir / "python", "-m", "pip", "list", "--format", "json", "--disable-pip-version-check"])
    return {p["name"].lower().replace("_", "-") for p in json.loads(proc.stdout)}


def test_data_extra_curates_with_the_local_engine_without_spark(wheel, tmp_path):
    bin_dir = make_venv(tmp_path, wheel, "data", torch=False)
    packages = installed(bin_dir)
    assert "nexus-llm" in packages and {"ftfy", "scipy"} <= packages
    assert not packages & {"pyspark", "torch", "transformers", "mlflow", "mlflow-skinny"}, packages
    # 200 documents of the bundled corpus
    source = sorted((REPO / "examples" / "corpus").glob("*.jsonl.gz"))[0]
    raw = tmp_path / "raw.jsonl"
    with gzip.open(source, "rt", encoding="utf-8") as fh:
        raw.write_text("".join(line for _, line in zip(range(200), fh, strict=False)), encoding="utf-8")
    out = tmp_path / "curated"
    cmd = [bin_dir / "nexus", "data", "prepare", raw, "-o", out, "--engine", "local", "--workers", "2"]
    _run(cmd, env=clean_env(), cwd=tmp_path)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["records_in"] == 200 and 0 < manifest["records_out"] <= 200
    # the Spark engine says which extra it needs instead of a traceback
    proc = subprocess.run(
        [bin_dir / "nexus", "data", "prepare", raw, "-o", tmp_path / "spark", "--engine", "spark"],
        capture_output=True, text=True, env=clean_env(), cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and "nexus-llm[spark]" in proc.stdout + proc.stderr, proc.stderr[-2000:]


def test_train_extra_trains_without_the_mlflow_server_stack(wheel, tmp_path, tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    from support.tiny import TINY_TEXTS
    from support.token_shards import write_token_dir

    bin_dir = make_venv(tmp_path, wheel, "train", torch=True)
    packages = installed(bin_dir)
    assert {"torch", "accelerate", "peft", "mlflow-skinny"} <= packages
    server_stack = {"flask", "sqlalchemy", "alembic", "gunicorn", "mlflow", "pyspark", "lm-eval"}
    assert not packages & server_stack, packages & server_stack
    tokens = tmp_path / "tokens"
    tok = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    write_token_dir(tokens, tok, {"train": TINY_TEXTS, "val": TINY_TEXTS[:12]})
    tok.save_pretrained(tokens / "tokenizer")
    config = tmp_path / "nexus.yaml"
    train = {"tokens": str(tokens), "preset": "demo", "seq_len": 32, "micro_batch_size": 2, "max_steps": 3,
             "log_every": 1, "eval_every": 3, "eval_batches": 1, "save_every": 100}  # fmt: skip
    config.write_text(yaml.safe_dump({"workspace": str(tmp_path / "ws"), "train": train}), encoding="utf-8")
    _run([bin_dir / "nexus", "train", "-c", config], env=clean_env(), cwd=tmp_path)
    assert (tmp_path / "ws" / "model" / "manifest.json").is_file()
    assert (tmp_path / "ws" / "model" / "model.safetensors").is_file()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_extra_serves_a_model_with_uvloop_and_httptools(wheel, tmp_path, tiny_model_dir):
    bin_dir = make_venv(tmp_path, wheel, "serve", torch=True)
    packages = installed(bin_dir)
    assert {"torch", "transformers", "fastapi", "uvicorn", "uvloop", "httptools"} <= packages
    assert not packages & {"pyspark", "mlflow", "mlflow-skinny", "lm-eval", "boto3", "accelerate"}, packages
    # the wheel carries the native kernels' source; compiling it here (40 s) is left to their own tests
    probe = "import nexus_llm.serve.engine.native as n; print(n.SOURCE.is_file())"
    assert _run([bin_dir / "python", "-c", probe]).stdout.strip() == "True"
    port = _free_port()
    log = (tmp_path / "serve.log").open("w+")
    proc = subprocess.Popen(
        [bin_dir / "nexus", "serve", tiny_model_dir, "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env=clean_env(NEXUS_NATIVE_KERNELS="0"), cwd=tmp_path,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "no healthy server within 180 s"
            time.sleep(0.5)
        reply = httpx.post(f"{url}/generate", json={"prompt": "Hello", "max_tokens": 8}, timeout=60)
        assert reply.status_code == 200 and reply.json()["tokens_generated"] > 0, reply.text
    finally:
        proc.terminate()
        proc.wait(60)
    text = (tmp_path / "serve.log").read_text()
    assert "Traceback" not in text, text[-3000:]
    # what uvicorn's `auto` settings (nexus serve's) resolve to in this venv: httptools and uvloop
    probe = "from uvicorn.protocols.http.auto import AutoHTTPProtocol as P; from uvicorn.loops.auto import auto_loop_factory as f; print(P.__name__, f()().__class__.__module__)"
    names = _run([bin_dir / "python", "-c", probe], env=clean_env()).stdout.split()
    assert names[0] == "HttpToolsProtocol" and names[1].startswith("uvloop"), names
