"""Fixtures for infra tests: the sweep fixtures of tests/sweeps, and a real MLflow tracking server on loopback
with a database backend and basic authentication on."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# The sweep tests' fixtures (tiny real sweeps on the session's smoke dataset; reaping Ray leftovers), loaded by
# path: test directories are not packages here.
_spec = importlib.util.spec_from_file_location("_sweep_fixtures", Path(__file__).parents[1] / "sweeps" / "conftest.py")
_sweeps = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_sweeps)
write_sweep, reaper, TINY = _sweeps.write_sweep, _sweeps.reaper, _sweeps.TINY

REPO = Path(__file__).parents[2]
MLFLOW = Path(sys.executable).with_name("mlflow")


@dataclass(frozen=True)
class TrackingServer:
    uri: str
    username: str
    password: str


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrackingServer]:
    """`mlflow server --app-name basic-auth` on 127.0.0.1 with sqlite stores, an admin with a fresh random
    password (never MLflow's sample one), stopped (its whole process group) at teardown."""
    root = tmp_path_factory.mktemp("mlflow-server")
    (root / "auth.ini").write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = sqlite:///{root / 'auth.db'}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    user, password = "flowsteer-admin", secrets.token_urlsafe(16)
    env = os.environ | {
        "MLFLOW_AUTH_CONFIG_PATH": str(root / "auth.ini"),
        "MLFLOW_AUTH_ADMIN_USERNAME": user,
        "MLFLOW_AUTH_ADMIN_PASSWORD": password,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
    }
    port = _free_port()
    command = [str(MLFLOW), "server", "--app-name", "basic-auth", "--host", "127.0.0.1", "--port", str(port),
               "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination",
               str(root / "artifacts"), "--workers", "1"]  # fmt: skip
    log = open(root / "server.log", "w")  # noqa: SIM115 (open for the server's lifetime)
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180  # database migrations make the first start slow on 2 loaded cores
        while True:
            assert server.poll() is None, (root / "server.log").read_text()[-3000:]
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                if response.status == 200:
                    break
            assert time.monotonic() < deadline, "MLflow server did not start:\n" + (root / "server.log").read_text()
            time.sleep(0.5)
        yield TrackingServer(uri, user, password)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)  # the server and its uvicorn worker: its own process group
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)  # a worker that outlived the server
        log.close()
