"""The agent's flags are declared once (xds/agent/cli.py): `python -m xds.agent` / `mecha agent` take them
as --NAME, the capability service as --agent-NAME, with the same defaults, types and validation."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from capabilities.identity_agent import add_arguments as add_embedded
from capabilities.identity_agent import config_from_args as embedded_config
from xds.agent.cli import EXIT_WITH_STDIN, add_arguments, config_from_args


def standalone_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser


def embedded_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_embedded(parser)
    return parser


def flags(parser: argparse.ArgumentParser, prefix: str) -> dict[str, tuple[object, ...]]:
    return {
        action.option_strings[0].removeprefix(prefix): (
            action.default,
            action.type,
            action.nargs,
            action.metavar,
        )
        for action in parser._actions
        if action.option_strings
        and action.option_strings[0].startswith(prefix)
        and action.help != "==SUPPRESS=="
    }


def test_the_same_flags_defaults_and_types_both_ways() -> None:
    standalone = flags(standalone_parser(), "--")
    assert EXIT_WITH_STDIN.removeprefix("--") not in standalone  # hidden: the service always sets it
    assert flags(embedded_parser(), "--agent-") == standalone


def test_the_same_argv_gives_the_same_config(tmp_path: Path) -> None:
    root = tmp_path / "root-cert.pem"
    root.write_text("read by the agent, not here\n")
    values = {"credential": "cred.jwt", "control-plane": "cp:15012", "root-cert": str(root),
              "socket-dir": str(tmp_path / "s"), "cert-dir": str(tmp_path / "c"), "socket-group": "7",
              "envoy-admin": "127.0.0.1:15000", "trust-domain": "example.org", "cert-ttl": "60"}  # fmt: skip
    standalone = standalone_parser().parse_args([a for k, v in values.items() for a in (f"--{k}", v)])
    embedded = embedded_parser().parse_args([a for k, v in values.items() for a in (f"--agent-{k}", v)])
    config = config_from_args(standalone, None)
    assert embedded_config(embedded) == config
    assert (config.cert_ttl_s, config.socket_group, config.trust_domain) == (60.0, 7, "example.org")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--agent-credential", "c"], "--agent-socket-dir is required with --agent-credential"),
        (["--agent-credential", "c", "--agent-socket-dir", "s"],
         "--agent-root-cert is required with --agent-credential (or --agent-insecure)"),
        (["--agent-credential", "c", "--agent-socket-dir", "s", "--agent-root-cert", "missing.pem"],
         "--agent-root-cert missing.pem: no such file (the mesh root, ca/root-cert.pem)"),
    ],
)  # fmt: skip
def test_embedded_errors_name_the_agent_flag(argv: list[str], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        embedded_config(embedded_parser().parse_args(argv))
    assert str(caught.value) == message


def test_standalone_errors_name_its_flag(tmp_path: Path) -> None:
    args = standalone_parser().parse_args(["--credential", "c", "--socket-dir", "s"])
    with pytest.raises(ValueError) as caught:
        config_from_args(args, tmp_path / "missing.pem")
    assert (
        str(caught.value)
        == f"--root-cert {tmp_path / 'missing.pem'}: no such file (the mesh root, ca/root-cert.pem)"
    )


def test_no_credential_no_embedded_agent() -> None:
    assert embedded_config(embedded_parser().parse_args([])) is None
    assert embedded_config(embedded_parser().parse_args(["--agent-insecure"])) is None
