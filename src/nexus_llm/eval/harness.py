"""EleutherAI lm-evaluation-harness on the already-loaded model, offline-friendly.

A task is named three ways: a built-in lm-eval name (``mrpc``, ``glue``, ``hellaswag``), a path to a task
YAML, or the ``task:`` name of a YAML in one of ``task_dirs``. Local YAMLs may point ``data_files`` at
files beside them: relative paths are resolved against the YAML's folder (lm-eval would resolve them
against the working directory). ``task_data`` points a task at a local copy of its dataset.

The harness indexes all ~14,000 of its task YAMLs on start-up (18 s measured on 2 shared cores). Here only
the YAMLs that mention a requested name are indexed (a plain text search, about 1.5 s), falling back to
the full index when the files found that way do not define the task after all.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nexus_llm import storage
from nexus_llm.eval.errors import EvalError


@dataclass
class TaskSpec:
    """A requested task: its name, and either an inline config (local YAML) or a registered name."""

    name: str
    config: dict[str, Any] | None = None


def run_tasks(model, tokenizer, cfg, limit: int | None = None) -> dict[str, Any]:
    """Evaluate ``cfg.tasks`` on the loaded model; results keyed by task name (see ``normalize``)."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    _quiet_harness()
    manager, specs = prepare(cfg.tasks, cfg.task_dirs, cfg.task_data)
    loaded = [obj for spec in specs for obj in _load(manager, spec)]
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=cfg.batch_size, device=str(model.device))
    try:
        result = simple_evaluate(
            model=lm,
            tasks=loaded,
            task_manager=manager,
            num_fewshot=cfg.num_fewshot,
            limit=limit,
            bootstrap_iters=cfg.bootstrap_iters,
            log_samples=False,
            random_seed=cfg.seed,
            numpy_random_seed=cfg.seed,
            torch_random_seed=cfg.seed,
            fewshot_random_seed=cfg.seed,
        )
    except _task_errors() as err:
        raise EvalError(_task_failure_message(err, [s.name for s in specs])) from err
    return normalize(result)


def prepare(names: list[str], task_dirs: list[str], task_data: dict[str, str]):
    """A TaskManager that knows the requested built-in names, and one spec per requested task."""
    local = _index_task_dirs(task_dirs)
    specs: list[TaskSpec] = []
    builtin: list[str] = []
    for name in names:
        path = Path(name)
        if name.endswith((".yaml", ".yml")):
            if not path.is_file():
                raise EvalError(f"task file {name!r} not found.")
            specs.append(_local_spec(path))
        elif name in local:
            specs.append(_local_spec(local[name]))
        else:
            specs.append(TaskSpec(name))
            builtin.append(name)
    unknown_data = set(task_data) - {s.name for s in specs}
    if unknown_data:
        raise EvalError(f"task_data names {sorted(unknown_data)} that are not among the requested tasks.")
    manager = builtin_manager(builtin)
    for spec in specs:
        if spec.name in task_data:
            spec.config = _with_local_data(manager, spec, task_data[spec.name])
    return manager, specs


def _index_task_dirs(task_dirs: list[str]) -> dict[str, Path]:
    load_yaml = _harness_yaml_loader()
    found: dict[str, Path] = {}
    for d in task_dirs:
        if not Path(d).is_dir():
            raise EvalError(f"task directory {d!r} not found.")
        for path in sorted(Path(d).rglob("*.yaml")):
            try:
                cfg = load_yaml(path, resolve_func=False)
            except Exception:  # not a task YAML (lm-eval skips these the same way)
                continue
            if isinstance(cfg.get("task"), str):
                found.setdefault(cfg["task"], path)
    return found


def load_task_yaml(path: Path) -> dict[str, Any]:
    """A task YAML as lm-eval reads it, with relative data paths resolved against the YAML's folder."""
    load_yaml = _harness_yaml_loader()
    try:
        cfg = load_yaml(path, resolve_func=True)
    except Exception as err:
        raise EvalError(f"cannot read task file {str(path)!r}: {err}") from None
    if not isinstance(cfg.get("task"), str):
        raise EvalError(f"{path} defines no `task:` name; a task YAML needs one.")
    base = path.resolve().parent
    kwargs = dict(cfg.get("dataset_kwargs") or {})
    if "data_files" in kwargs:
        kwargs["data_files"] = _resolve_paths(kwargs["data_files"], base)
        cfg["dataset_kwargs"] = kwargs
    ds = cfg.get("dataset_path")
    if isinstance(ds, str) and ds.startswith((".", "/")):
        cfg["dataset_path"] = str(_resolve_paths(ds, base))
    return cfg


def _resolve_paths(value, base: Path):
    if isinstance(value, dict):
        return {k: _resolve_paths(v, base) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_paths(v, base) for v in value]
    if isinstance(value, str) and not storage.is_remote(value) and not Path(value).is_absolute():
        return str((base / value).resolve())
    return value


def _local_spec(path: Path) -> TaskSpec:
    cfg = load_task_yaml(path)
    return TaskSpec(cfg["task"], cfg)


def _with_local_data(manager, spec: TaskSpec, folder: str) -> dict[str, Any]:
    """The task's config reading its splits from ``folder`` instead of the Hugging Face Hub."""
    if not Path(folder).is_dir():
        raise EvalError(f"task_data for {spec.name!r}: folder {folder!r} not found.")
    cfg = spec.config
    if cfg is None:
        entry = manager.task_index.get(spec.name)
        if entry is None or entry.yaml_path is None or "task" not in (entry.cfg or {}):
            raise EvalError(f"task_data works for single tasks; {spec.name!r} is not one.")
        cfg = load_task_yaml(Path(entry.yaml_path))
    return {**cfg, "dataset_path": str(Path(folder).resolve()), "dataset_name": None, "dataset_kwargs": None}


def builtin_manager(names: list[str]):
    """A TaskManager indexing only the harness's YAMLs that can define ``names`` (see module docstring)."""
    from lm_eval.tasks import TaskManager

    files = _files_for(names) if names else set()
    if not files:
        return _checked(TaskManager(include_defaults=False))
    farm = Path(tempfile.mkdtemp(prefix="nexus-lm-eval-tasks-"))
    for i, path in enumerate(sorted(files)):
        (farm / f"{i:05d}-{path.name}").symlink_to(path)  # lm-eval resolves the link: includes still work
    manager = _checked(TaskManager(include_defaults=False, include_path=str(farm)))
    weakref.finalize(manager, shutil.rmtree, farm, True)
    if any(n not in manager.all_tasks for n in names):
        return TaskManager()  # defined in a way the text search cannot see; let the harness index it all
    return manager


def _harness_yaml_texts() -> dict[Path, str]:
    import lm_eval.tasks

    root = Path(lm_eval.tasks.__file__).parent
    return {p: p.read_text(encoding="utf-8", errors="replace") for p in root.rglob("*.yaml")}


def _files_for(names: list[str]) -> set[Path]:
    """The harness's YAML files that mention a name, closed over the members of groups among them."""
    load_yaml = _harness_yaml_loader()
    texts = _harness_yaml_texts()
    wanted, seen, files = set(names), set(), set()
    while wanted - seen:
        batch = wanted - seen
        seen |= batch
        pattern = re.compile(r"(?<![\w\-.])(" + "|".join(re.escape(n) for n in batch) + r")(?![\w\-])")
        for path in (p for p, text in texts.items() if pattern.search(text)):
            files.add(path)
            try:
                cfg = load_yaml(path, resolve_func=False)
            except Exception:
                continue
            members = cfg.get("task") if "group" in cfg else None
            for member in members if isinstance(members, list) else []:
                ref = (member.get("task") or member.get("group")) if isinstance(member, dict) else member
                if isinstance(ref, str):
                    wanted.add(ref)
    return files


def _load(manager, spec: TaskSpec) -> list:
    """Build the task (which loads its dataset), turning a missing dataset into a clear error."""
    if spec.config is None and spec.name not in manager.all_tasks:
        raise EvalError(_unknown_task_message(spec.name))
    try:
        loaded = manager.load([spec.config if spec.config is not None else spec.name])
    except (ConnectionError, FileNotFoundError) as err:
        raise EvalError(_missing_dataset_message(manager, spec, err)) from None
    except KeyError as err:
        raise EvalError(f"task {spec.name!r}: its dataset has no split or column {err}.") from None
    except _task_errors() as err:  # building a task renders its templates on the first document
        raise EvalError(_task_failure_message(err, [spec.name])) from err
    return list(loaded["groups"].values()) or list(loaded["tasks"].values())


def _unknown_task_message(name: str) -> str:
    import difflib

    names = {
        m.group(2)
        for text in _harness_yaml_texts().values()
        for m in re.finditer(r"^(task|group|tag):\s*['\"]?([\w\-.]+)", text, re.MULTILINE)
    }
    guess = difflib.get_close_matches(name, sorted(names), n=3)
    hint = f" Did you mean {', '.join(guess)}?" if guess else ""
    return (
        f"unknown lm-eval task {name!r}.{hint} Name a built-in task, a task YAML file, or a task "
        "defined in a --task-dir folder (see examples/tasks)."
    )


def _missing_dataset_message(manager, spec: TaskSpec, err: Exception) -> str:
    cfg = spec.config or (getattr(manager.task_index.get(spec.name), "cfg", None) or {})
    dataset, subset = cfg.get("dataset_path"), cfg.get("dataset_name")
    if not dataset:
        quoted = re.findall(r"'([^']+)'", str(err))
        dataset = quoted[0] if quoted else "its dataset"
    if dataset in ("json", "csv", "parquet", "text"):
        files = (cfg.get("dataset_kwargs") or {}).get("data_files")
        return f"task {spec.name!r}: a local data file is missing ({err}). Data files: {files}."
    what = f"{dataset!r}" + (f" (config {subset!r})" if subset else "")
    return (
        f"task {spec.name!r} needs the Hugging Face dataset {what}, which is not available on this "
        "machine: it is not in the local datasets cache and cannot be downloaded (offline, or "
        "HF_DATASETS_OFFLINE=1). Fix: download it once where the Hub is reachable (it is then cached), "
        f"or point the task at a local copy of its split files: --task-data {spec.name}=FOLDER "
        "(train/validation/test parquet, jsonl or csv, as in the dataset repository)."
    )


def normalize(result: dict[str, Any]) -> dict[str, Any]:
    """lm-eval's ``results`` as ``{task: {metrics, stderr, samples, num_fewshot, higher_is_better}}``."""
    out: dict[str, Any] = {}
    for name, raw in result.get("results", {}).items():
        metrics: dict[str, float | None] = {}
        stderr: dict[str, float] = {}
        for key, value in raw.items():
            if "," not in key or not isinstance(value, int | float):
                continue
            metric, filt = key.split(",", 1)
            label = metric if filt == "none" else f"{metric},{filt}"
            if metric.endswith("_stderr"):
                stderr[label.replace("_stderr", "", 1)] = float(value)
            else:
                metrics[label] = float(value) if math.isfinite(value) else None
        out[name] = {
            "alias": str(raw.get("alias", name)).strip(" -"),
            "metrics": metrics,
            "stderr": stderr,
            "samples": (result.get("n-samples", {}).get(name) or {}).get("effective"),
            "num_fewshot": result.get("n-shot", {}).get(name),
            "higher_is_better": result.get("higher_is_better", {}).get(name, {}),
            "version": result.get("versions", {}).get(name),
        }
    return out


def _quiet_harness() -> None:
    """lm-eval logs every default it fills in at WARNING; keep the terminal for our progress."""
    for name in ("lm_eval", "lm-eval"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _task_errors() -> tuple[type[Exception], ...]:
    """What a task's own definition can raise inside the harness: a template naming a missing column
    (jinja2's UndefinedError), a ``!function`` that fails, a metric on an empty or odd dataset, or the
    model running out of memory on a batch (RuntimeError)."""
    import jinja2

    return (jinja2.TemplateError, LookupError, TypeError, ValueError, AttributeError, ArithmeticError,
            RuntimeError)  # fmt: skip


def _task_failure_message(err: Exception, requested: list[str]) -> str:
    """Name the task that failed: the innermost harness ``Task`` on the traceback, else the requested ones."""
    import traceback

    import jinja2
    from lm_eval.api.task import Task

    names = [
        getattr(getattr(frame.f_locals.get("self"), "config", None), "task", None)
        for frame, _ in traceback.walk_tb(err.__traceback__)
        if isinstance(frame.f_locals.get("self"), Task)
    ]
    names = [n for n in names if isinstance(n, str)]
    which = f"task {names[-1]!r}" if names else "task(s) " + ", ".join(repr(n) for n in requested)
    hint = (
        " Check its doc_to_text / doc_to_target / doc_to_choice templates against the dataset's columns."
        if isinstance(err, jinja2.TemplateError)
        else ""
    )
    return f"lm-eval failed on {which}: {type(err).__name__}: {str(err).rstrip('.')}.{hint}"


# --- lm-eval internals ----------------------------------------------------------------------------
# lm-eval 0.4.13 has no public way to read a task YAML the way the harness does (``include:`` merging,
# ``!function`` tags) or to find where a registered task's YAML lives. This module uses its private
# ``lm_eval.tasks._yaml_loader.load_yaml`` (imported only in _harness_yaml_loader) and
# ``TaskManager.task_index`` / ``TaskManager.load`` (checked in _checked). pyproject pins lm-eval to
# >=0.4.13,<0.5; should an install outside that range lack them, the user is told which version to
# install instead of seeing an ImportError or AttributeError from deep inside a run.


def _harness_yaml_loader():
    """lm-eval's own task YAML reader (private API, see the comment above)."""
    try:
        from lm_eval.tasks._yaml_loader import load_yaml
    except ImportError as err:
        raise EvalError(_incompatible_harness(f"lm_eval.tasks._yaml_loader.load_yaml ({err})")) from None
    return load_yaml


def _checked(manager):
    """``manager`` when it has the TaskManager API this module uses (see the comment above)."""
    missing = [name for name in ("task_index", "load", "all_tasks") if not hasattr(manager, name)]
    if missing:
        raise EvalError(_incompatible_harness("TaskManager." + ", TaskManager.".join(missing)))
    return manager


def _incompatible_harness(what: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version("lm-eval")
    except PackageNotFoundError:
        installed = "unknown"
    return (
        f"the installed lm-eval ({installed}) lacks {what}, which nexus eval relies on. "
        "Install a supported version: pip install 'lm-eval>=0.4.13,<0.5' (or 'nexus-llm[eval]')."
    )
