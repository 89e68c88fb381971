"""Joining a Ray cluster that uses token authentication without its token fails fast, with one line saying what
to set (``RAY_AUTH_MODE``, ``RAY_AUTH_TOKEN``), instead of 20 s of ``InvalidAuthToken`` retries ending in "Failed
to connect". The cluster is a real ``ray start --head`` on 127.0.0.1 with its own temp dir, stopped by process group
(never ``ray stop``, which would stop every Ray on the machine)."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_mm1

pytestmark = pytest.mark.slow

RAY = Path(sys.executable).parent / "ray"
SPEC = {
    "name": "auth",
    "experiment": "auth",
    "base": {"model": {"decoder": {"name": "lm-nano"}}, "train": {"max_steps": 2, "batch_size": 2}},
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def token_cluster() -> Iterator[str]:
    """``HOST:PORT`` of a one-node cluster whose head requires a token this process does not have."""
    port, temp = free_port(), tempfile.mkdtemp(prefix="mm1ray", dir="/tmp")  # short: Ray's socket paths have a limit
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    command = [str(RAY), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "1"]
    command += ["--temp-dir", temp, "--include-dashboard", "false", "--disable-usage-stats", "--block"]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    head = subprocess.Popen(command, env=env, start_new_session=True, **quiet)
    try:
        wait_for_port(port, head, deadline=time.monotonic() + 40)
        wait_for_gcs(f"127.0.0.1:{port}", deadline=time.monotonic() + 40)
        yield f"127.0.0.1:{port}"
    finally:
        stop_group(head)
        shutil.rmtree(temp, ignore_errors=True)


def wait_for_port(port: int, head: subprocess.Popen, deadline: float) -> None:
    while time.monotonic() < deadline:
        assert head.poll() is None, f"ray start exited with {head.returncode}"
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                time.sleep(1.0)  # the port opens a moment before the GCS serves
                return
        time.sleep(0.3)
    raise TimeoutError(f"no Ray head on port {port}")


def wait_for_gcs(address: str, deadline: float) -> None:
    """Until the head's GCS serves (it refuses this token-less process: that is its answer), on a loaded machine
    some seconds after its port opens."""
    from orchestrator.run import _PROBE

    while time.monotonic() < deadline:
        answer = subprocess.run([sys.executable, "-c", _PROBE, address, "2000"], capture_output=True, text=True)
        if answer.stdout.strip().startswith("auth"):
            return
        time.sleep(0.5)
    raise TimeoutError(f"the Ray head at {address} never answered")


def stop_group(head: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL, to the process group ``ray start`` leads: its GCS, raylet and agents, nothing else."""
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(head.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(head.pid, 0)
            except ProcessLookupError:
                head.wait(timeout=5)
                return
            head.poll()
            time.sleep(0.2)


def test_joining_without_the_token_fails_fast_and_says_so(token_cluster: str, tmp_path: Path) -> None:
    spec = tmp_path / "auth.yaml"
    spec.write_text(yaml.safe_dump(SPEC, sort_keys=False))
    env = {"HOME": str(tmp_path)}  # no ~/.ray/auth_token of an earlier local run
    started = time.monotonic()
    result = run_mm1("sweep", "run", str(spec), "--address", token_cluster, cwd=tmp_path, timeout=120, env=env)
    took = time.monotonic() - started
    errors = [line for line in result.stderr.splitlines() if line.startswith("mm1:")]  # not MLflow's INFO lines
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert len(errors) == 1, result.stdout[-2000:] + result.stderr[-3000:]
    assert errors[0].startswith(f"mm1: error: cannot join Ray at {token_cluster}: "), errors
    assert "RAY_AUTH_MODE=token" in errors[0] and "RAY_AUTH_TOKEN" in errors[0]
    assert "InvalidAuthToken" not in result.stdout + result.stderr
    assert took < 20, f"took {took:.0f} s"


def test_token_mode_without_a_token_is_named_before_any_connection(token_cluster: str, tmp_path: Path) -> None:
    spec = tmp_path / "auth.yaml"
    spec.write_text(yaml.safe_dump(SPEC, sort_keys=False))
    env = {"HOME": str(tmp_path), "RAY_AUTH_MODE": "token"}  # as a shell after `ray.init` set it, with no token
    result = run_mm1("sweep", "run", str(spec), "--address", token_cluster, cwd=tmp_path, timeout=120, env=env)
    errors = [line for line in result.stderr.splitlines() if line.startswith("mm1:")]
    assert result.returncode == 1 and len(errors) == 1, result.stderr[-3000:]
    assert "RAY_AUTH_MODE=token is set but no token is: set RAY_AUTH_TOKEN" in errors[0]
