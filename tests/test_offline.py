"""Nothing waits on the network: online W&B without a reachable server falls back to offline at once."""

import http.server
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from recipelab.records import tracking
from recipelab.records.wandb_file import read_run, run_files
from tests.conftest import train_cli

UNREACHABLE = {"WANDB_MODE": "online", "WANDB_BASE_URL": "http://127.0.0.1:9"}  # the discard port: refused


def test_offline_is_the_default():
    env = {k: v for k, v in os.environ.items() if k != "WANDB_MODE"}
    code = (
        "import os; "
        "from recipelab.records import tracking as t; print(t.settle_wandb_mode(), os.environ['WANDB_MODE'])"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=120
    )
    assert proc.stdout.split() == ["offline", "offline"] and proc.stderr == ""


def test_unreachable_server_falls_back_to_offline_with_a_warning(monkeypatch, capsys):
    for key, value in UNREACHABLE.items():
        monkeypatch.setenv(key, value)
    assert tracking.settle_wandb_mode() == "offline"
    assert os.environ["WANDB_MODE"] == "offline"
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("warning: W&B server http://127.0.0.1:9 unreachable") and "make sync" in line


def test_a_server_must_answer_within_the_timeout(monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "online")
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{silent.getsockname()[1]}")
        assert tracking.settle_wandb_mode(timeout_s=0.5) == "offline"
    assert "unreachable" in capsys.readouterr().err

    monkeypatch.setenv("WANDB_MODE", "online")
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)  # answers 501
    threading.Thread(target=server.handle_request, daemon=True).start()
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{server.server_address[1]}")
    try:
        assert tracking.settle_wandb_mode() == "online" and os.environ["WANDB_MODE"] == "online"
    finally:
        server.server_close()


@pytest.mark.slow
def test_run_with_network_unreachable_trains_offline(tmp_path):
    start = time.time()
    run = train_cli(tmp_path, "logger=wandb", env=UNREACHABLE)
    print(f"run with W&B online requested and no network: {time.time() - start:.1f} s")
    assert run.proc.returncode == 0, run.proc.stderr[-3000:]
    assert "warning: W&B server http://127.0.0.1:9 unreachable" in run.proc.stderr
    (path,) = run_files(run.run_dir)  # logged offline, ready for `make sync`
    assert read_run(path).summary["test/acc"] == run.metrics()["metrics"]["test/acc"]
