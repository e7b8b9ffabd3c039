"""The command line in process: `check` lists every error of a file, `models` needs no secret it does not use,
and `auth login -h` describes each login."""

from __future__ import annotations

from pathlib import Path

import pytest

from extproc.auth.terminal import accounts_table
from extproc.cli import main
from extproc.config import load_settings
from extproc.config.data import builtin_flow_data

GATEWAY = """\
providers:
  openai: {api_key: "${UNSET_OPENAI_KEY}"}
clients:
  keys: [{name: me, key: "${UNSET_CLIENT_KEY}"}]
"""


@pytest.fixture(autouse=True)
def _fork_support(monkeypatch: pytest.MonkeyPatch) -> None:
    """main() sets gRPC's fork support for the processes it starts; the test process gets its own back."""
    monkeypatch.setenv("GRPC_ENABLE_FORK_SUPPORT", "false")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_check_lists_every_error_of_the_file_in_its_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("log_level: loud\nlisten: {adress: 127.0.0.1}\nproviders:\n  openai: {apikey: x}\n")
    code, out, err = run(capsys, "check", "-c", str(path))
    lines = err.splitlines()
    assert (code, out) == (2, "")
    assert lines[0] == "extproc: 3 config errors:"
    assert [line.strip().split(": ", 1)[0] for line in lines[1:]] == ["log_level", "listen.adress",
                                                                      "providers.openai.apikey"]


def test_models_needs_no_client_or_provider_secret_but_check_does(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(GATEWAY)
    code, out, err = run(capsys, "models", "-c", str(path))
    assert (code, err) == (0, "")
    assert out.startswith("MODEL") and "gpt-" in out and "no (" in out  # the keys this shell lacks: unavailable
    code, _, err = run(capsys, "check", "-c", str(path))
    assert code == 2 and "UNSET_OPENAI_KEY" in err and "UNSET_CLIENT_KEY" in err


def test_auth_login_help_describes_each_login(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["auth", "login", "-h"])
    out = capsys.readouterr().out
    assert done.value.code == 0
    for name, flow in builtin_flow_data().items():
        (line,) = [line for line in out.splitlines() if line.split()[:1] == [name]]
        if not flow.get("authorize_url"):  # a login by device code only
            assert flow["title"] in line and "code entered on its page" in line and "--device" not in line
            continue
        assert flow["title"] in line and ("browser" in line or "paste" in line)
        assert ("--device" in line) == ("device" in flow), line


def test_auth_list_without_accounts_names_the_configured_logins() -> None:
    flows = load_settings(None).flows
    hint = accounts_table([], flows)
    assert hint.startswith("no accounts: log in with `extproc auth login <")
    assert hint.split("<", 1)[1].split(">", 1)[0].split("|") == list(flows)


def test_envoy_config_reads_its_routes_from_the_directory_init_routes_writes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, routes = tmp_path / "c.yaml", tmp_path / "routes"
    path.write_text(f"fast_routes: {tmp_path / 'unused'}\n")
    assert run(capsys, "init-routes", "-c", str(path), "--routes-dir", str(routes)) == (0, "", "")
    assert (routes / "routes.json").stat().st_mode & 0o777 == 0o600
    code, out, _ = run(capsys, "envoy-config", "-c", str(path), "--routes-dir", str(routes))
    assert code == 0 and f"path: {routes / 'routes.json'}" in out  # the flag wins over the config's key
    assert "rds:" in out and "unused" not in out
    code, out, err = run(capsys, "init-routes")  # the embedded config names no directory
    assert (code, out) == (2, "") and "set fast_routes in the config or pass --routes-dir" in err
