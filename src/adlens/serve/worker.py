"""How ``adlens serve`` runs: the process set-up shared by one process and ``--workers N``.

With several workers uvicorn starts each one by import string, so a worker builds its
:class:`~adlens.serve.service.Service` from the settings the CLI put in the environment
(:data:`ENV`, JSON): ``{"workspace": path, "config": {ServeConfig fields}}``.
"""

from __future__ import annotations

import gc
import json
import os
from dataclasses import asdict
from typing import Any

__all__ = ["ENV", "app_from_env", "config_to_env", "tune_gc"]

ENV = "ADLENS_SERVE_WORKER"


def tune_gc() -> None:
    """Everything loaded at start (models, preloaded features, the pair table) lives as long as the
    process: keep it out of the cyclic GC so that full collections do not pause requests (they
    showed in the p99), and make full collections rare; young collections still free request garbage."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 1_000)


def config_to_env(workspace: str, config) -> str:
    """The JSON a worker reads back with :func:`app_from_env`."""
    d = asdict(config)
    d["weights"] = None if config.weights is None else config.weights.to_dict()
    d["prior"] = asdict(config.prior)
    return json.dumps({"workspace": str(workspace), "config": d})


def app_from_env() -> Any:
    """uvicorn factory of one worker: the Service and the app from :data:`ENV`; the Service is
    closed (last WAL checkpoint) when the worker shuts down. Each worker adds its process id to
    the selector's seed, so that workers do not draw the same random numbers."""
    from adlens.bandit.policies import Prior, Weights
    from adlens.serve import ServeConfig, Service, create_app
    from adlens.workspace import open_workspace

    spec = json.loads(os.environ[ENV])
    c = dict(spec["config"])
    c["weights"] = None if c["weights"] is None else Weights.from_dict(c["weights"])
    c["prior"] = Prior(**c["prior"])
    if c.get("random_state") is not None:
        c["random_state"] = int(c["random_state"]) + os.getpid()
    ws = open_workspace(spec["workspace"])
    service = Service(ws, ServeConfig(**c))

    def close() -> None:
        service.close()  # last WAL checkpoint
        ws.close()

    app = create_app(service, on_shutdown=close)
    tune_gc()
    return app
