"""The launcher binds loopback without sign-in and refuses a remote address unless sign-in is on or waived."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from core.team import binding
from core.team.binding import BindRefused, check_binding, is_loopback, streamlit_args
from tests.browser import _free_port
from tests.test_launcher import _wait_healthy

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture
def no_auth(tmp_path, settings_override):
    settings_override(streamlit_secrets_file=tmp_path / "absent.toml")
    return tmp_path / "absent.toml"


@pytest.fixture
def with_auth(tmp_path, settings_override):
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[auth]\nredirect_uri = "http://wb.example.com/oauth2callback"\ncookie_secret = "s"\n')
    settings_override(streamlit_secrets_file=secrets)
    return secrets


@pytest.mark.parametrize("address, local", [
    ("127.0.0.1", True), ("127.0.0.2", True), ("localhost", True), ("::1", True), ("[::1]", True),
    ("0.0.0.0", False), ("::", False), ("", False), ("192.168.1.20", False), ("10.0.0.1", False),
    ("no-such-host.invalid", False),
])
def test_loopback_addresses(address, local):
    assert is_loopback(address) is local


def test_remote_bind_without_sign_in_is_refused_with_the_ways_out(no_auth):
    with pytest.raises(BindRefused) as err:
        check_binding(address="0.0.0.0")
    text = str(err.value)
    assert "without sign-in" in text and "ALLOW_UNAUTHENTICATED_REMOTE=true" in text and "[auth]" in text
    assert check_binding(address="127.0.0.1") == binding.Binding("127.0.0.1", loopback=True, auth_enabled=False)


def test_remote_bind_is_allowed_with_sign_in_or_the_explicit_waiver(no_auth, with_auth, settings_override):
    assert check_binding(address="0.0.0.0").auth_enabled
    settings_override(streamlit_secrets_file=no_auth, allow_unauthenticated_remote="true")
    assert check_binding(address="0.0.0.0") == binding.Binding("0.0.0.0", loopback=False, auth_enabled=False)


def test_an_unreadable_secrets_file_cannot_open_a_remote_bind(tmp_path, settings_override):
    broken = tmp_path / "secrets.toml"
    broken.write_text("[auth\n")
    settings_override(streamlit_secrets_file=broken)
    with pytest.raises(BindRefused, match="cannot be read"):
        check_binding(address="0.0.0.0")
    assert check_binding(address="127.0.0.1").loopback  # a local server still starts; the page shows the error


def test_streamlit_gets_the_checked_address_and_core_s_secrets_file(with_auth, settings_override, monkeypatch):
    args, bound = streamlit_args(["--server.port", "9999"])
    assert args == ["--server.port", "9999", "--server.address", "127.0.0.1", "--secrets.files", str(with_auth)]
    settings_override(server_address="0.0.0.0")
    args, bound = streamlit_args(["--server.address=10.1.2.3"])  # the command line wins over SERVER_ADDRESS
    assert bound.address == "10.1.2.3" and args[-3:-2] == ["10.1.2.3"]
    other = with_auth.parent / "other.toml"
    monkeypatch.setenv("STREAMLIT_SECRETS_FILE", str(with_auth))  # restored after the test
    args, bound = streamlit_args(["--secrets.files", str(other), "--server.address", "127.0.0.1"])
    assert os.environ["STREAMLIT_SECRETS_FILE"] == str(other) and args[-1] == str(other)  # core follows Streamlit
    assert not bound.auth_enabled


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in ("SERVER_ADDRESS", "ALLOW_UNAUTHENTICATED_REMOTE")}
    return subprocess.run([sys.executable, "workbench.py", *args], cwd=ROOT, env={**full, **env},
                          capture_output=True, text=True, timeout=60)


def test_serve_refuses_a_remote_bind_without_sign_in_before_starting_anything(tmp_path):
    env = dict(STREAMLIT_SECRETS_FILE=str(tmp_path / "absent.toml"), PG_DATA_DIR=str(tmp_path / "pg"))
    for args, extra in ((["serve", "--address", "0.0.0.0"], {}), (["serve"], {"SERVER_ADDRESS": "192.168.7.7"}),
                        (["streamlit", "--server.address", "0.0.0.0"], {})):
        res = _run(args, **env, **extra)
        assert res.returncode == 2, res.stderr
        assert "Refusing to serve" in res.stderr and "ALLOW_UNAUTHENTICATED_REMOTE=true" in res.stderr
    assert not (tmp_path / "pg").exists()  # refused before the database was started


def _listening_on(proc: subprocess.Popen, port: int) -> str:
    _wait_healthy(proc, port)
    for conn in psutil.Process(proc.pid).net_connections(kind="inet"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port:
            return conn.laddr.ip
    raise AssertionError(f"nothing listens on port {port}")


@pytest.mark.parametrize("address_args, extra_env, expected", [
    ([], {}, "127.0.0.1"),  # local mode: loopback by default
    (["--server.address", "0.0.0.0"], {"ALLOW_UNAUTHENTICATED_REMOTE": "true"}, "0.0.0.0"),  # explicitly waived
])
def test_the_server_binds_loopback_by_default_and_remote_only_when_waived(tmp_path, address_args, extra_env, expected):
    port = _free_port()
    ARTIFACTS.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("SERVER_ADDRESS", "ALLOW_UNAUTHENTICATED_REMOTE")}
    env.update(STREAMLIT_SECRETS_FILE=str(tmp_path / "absent.toml"), EMBEDDING_WARMUP="false", **extra_env)
    with (ARTIFACTS / f"binding-{port}.log").open("w") as log:
        proc = subprocess.Popen([sys.executable, "workbench.py", "streamlit", "--server.port", str(port),
                                 "--server.headless", "true", "--server.fileWatcherType", "none", *address_args],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            assert _listening_on(proc, port) == expected
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
