"""Run the app under uvicorn with a graceful drain: SIGTERM stops new work and lets in-flight finish.

On SIGTERM (what ECS sends before it stops a task) or Ctrl-C: /health turns 503 at once so the load
balancer stops routing here, uvicorn stops accepting connections and waits up to ``drain_timeout_s``
for in-flight responses (streams included), then the engine stops and the process exits 0.
uvicorn's own handler would re-raise the signal after the drain and exit with 143; a finished drain
is a clean exit, so this one does not.
"""

from __future__ import annotations

import gc
import logging
import math
import signal
import threading
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from nexus_llm.serve.config import ServeConfig
from nexus_llm.serve.http.metrics import configure_emf_stdout

log = logging.getLogger("nexus_llm.serve")


class DrainingServer(uvicorn.Server):
    """uvicorn's server that marks the app as draining on the first signal and exits 0 afterwards."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app
        self.failed = False

    @contextmanager
    def capture_signals(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig, frame) -> None:
        if not self.should_exit:
            log.info("signal %s: draining in-flight requests, then exiting", signal.Signals(sig).name)
        self._app.state.serving.draining = True
        super().handle_exit(sig, frame)

    def watch_loading(self, engine) -> None:
        """Once the model is loaded, freeze the garbage collector's view of it; if loading fails, exit
        (non-zero) instead of answering 503 forever."""

        def watch() -> None:
            if engine.wait_ready():
                freeze_startup_objects()
            elif engine.stats().error:
                log.error("%s; stopping", engine.stats().error)
                self.failed = True
                self.should_exit = True

        threading.Thread(target=watch, name="nexus-load-watch", daemon=True).start()


def freeze_startup_objects() -> None:
    """Move everything allocated so far (torch, transformers, the model: ~400k objects) out of the
    garbage collector's reach.

    A full collection walks every tracked object while holding the GIL. With the model loaded that took
    280-460 ms on the 2-core development machine and, under steady load, happened about every 40 s:
    a stall of every thread, /health included, that matches the worst /health latencies measured under
    load. These objects live as long as the process, so the collector has nothing to find among them;
    after ``gc.freeze()`` no collection during serving took over 10 ms (docs/serve.md has the figures).
    No ``gc.collect()`` first: it would be one more such stall, just as /health turns 200.
    """
    gc.freeze()


def raise_open_file_limit() -> int:
    """Raise this process's soft limit of open files to its hard limit; return the limit now in force.

    Every connection holds a descriptor: under systemd or some container runtimes the soft limit is
    1,024, and past it accept() fails and new clients (the load balancer's /health probe too) hang.
    The hard limit is the operator's ceiling; the soft one is ours to raise.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as err:
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, target, err)
    return soft


def run_server(app: FastAPI, host: str, port: int, drain_timeout_s: float, access_log: bool = False) -> int:
    """Serve ``app`` until a signal; return the process exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    configure_emf_stdout()
    raise_open_file_limit()
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        timeout_graceful_shutdown=math.ceil(drain_timeout_s),
        access_log=access_log,
        log_level="info",
        timeout_keep_alive=5,
    )
    server = DrainingServer(config, app)
    server.watch_loading(app.state.engine)
    server.run()
    return 1 if server.failed else 0


def resolve_served_model(model: str, settings: ServeConfig) -> tuple[str, str]:
    """(local directory, served name) for ``model``, a directory or ``s3://`` URI; raises OSError."""
    from nexus_llm.models.loading import resolve_model
    from nexus_llm.serve.engine.loading import check_model_dir

    local = resolve_model(model, settings.model_cache_dir)
    check_model_dir(local)
    return local, settings.model_name or Path(model.rstrip("/")).name


def serve_local_model(
    local: str, name: str, settings: ServeConfig, api_keys: Iterable[str] = (), engine: str | None = None
) -> int:
    """Load ``local`` in the background and serve it until a signal; return the exit code.

    ``engine`` is ``builtin`` or ``vllm`` (default: chosen from ``settings.engine``; raises
    :class:`~nexus_llm.serve.engine.backends.EngineUnavailable` when the one asked for cannot run here).
    """
    from nexus_llm.serve.engine.backends import choose_engine, make_engine
    from nexus_llm.serve.http.app import create_app

    kind = engine or choose_engine(settings.engine)
    app = create_app(make_engine(kind, local, name, settings), settings, api_keys)
    return run_server(app, settings.host, settings.port, settings.drain_timeout_s, settings.access_log)


def serve_model(model: str, settings: ServeConfig | None = None, api_keys: Iterable[str] = ()) -> int:
    """The library form of ``nexus serve MODEL``: serve until SIGTERM, return the exit code."""
    settings = settings or ServeConfig()
    local, name = resolve_served_model(model, settings)
    return serve_local_model(local, name, settings, api_keys)
