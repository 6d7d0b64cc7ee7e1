"""Fixtures for the openai SDK tests: a real mock upstream and a real modelgate proxy,
both started from the binaries `cargo build` made (MODELGATE_BIN_DIR)."""

import os
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

KEY = "sk-python-sdk-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


def binary(name: str) -> str:
    path = os.path.join(os.environ["MODELGATE_BIN_DIR"], name)
    if not os.path.exists(path):
        raise RuntimeError(f"{path} is missing; run cargo build first")
    return path


@pytest.fixture(scope="session")
def upstream():
    port = free_port()
    proc = subprocess.Popen([binary("mock-upstream"), "--listen", f"127.0.0.1:{port}"])
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.05)
    yield base
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="session")
def proxy(upstream):
    port = free_port()
    config = f"""
model_list:
  - model_name: gpt-4o
    litellm_params: {{model: openai/gpt-4o, api_base: "{upstream}/v1", api_key: sk-upstream}}
  - model_name: embed
    litellm_params: {{model: openai/text-embedding-3-small, api_base: "{upstream}/v1", api_key: sk-upstream}}
  - model_name: ratelimited
    litellm_params: {{model: openai/gpt-4o, mock_response: litellm.RateLimitError}}
  - model_name: down
    litellm_params: {{model: openai/gpt-4o, api_base: "http://127.0.0.1:9/v1"}}
router_settings:
  model_group_alias:
    gpt-4: gpt-4o
    secret-alias: {{model: gpt-4o, hidden: true}}
general_settings:
  master_key: {KEY}
  max_request_size_mb: 1
"""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "config.yaml")
        with open(path, "w") as f:
            f.write(config)
        proc = subprocess.Popen(
            [binary("modelgate-proxy"), "--config", path, "--host", "127.0.0.1", "--port", str(port)]
        )
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/health/readiness")
        yield base
        proc.terminate()
        proc.wait(timeout=10)
