"""Help conventions of every `mecha` command: defaults shown, an example each, global options anywhere."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

LOG_LEVELS = ("debug", "info", "warning", "error")

# One runnable example per command (shown under its --help); the docs test runs the documented ones.
EXAMPLES: dict[str, str] = {
    "serve": "mecha serve --config ./mesh --port 15010 --xds-port 15012",
    "apply": "mecha apply -f mesh/                # or -f vs.yaml -f dr.yaml, or -f - (stdin)",
    "diff": "mecha diff -f mesh/reviews-split.yaml",
    "delete": "mecha delete -f mesh/reviews-split.yaml",
    "validate": "mecha validate -f mesh/               # offline: no control plane needed",
    "analyze": "mecha analyze -f mesh/ -q",
    "import": "mecha import -f kubectl-export.yaml -o mesh/ --address-map addresses.yaml",
    "proxy-status": "mecha proxy-status || echo 'some proxy is NACKED or STALE'",
    "proxy-config": "mecha proxy-config productpage-v1 routes",
    "bootstrap": "mecha bootstrap --id reviews-v1 --app reviews:9081:15006 --label version=v1 -o envoy.yaml",
    "up": "mecha up --port-offset 100              # then `mecha proxy-status` finds it by itself",
    "down": "mecha down",
    "version": "mecha version",
    "list": "mecha list",
    "logs": "mecha logs reviews --tail 20",
    "invoke": "mecha invoke ratings ratings/1            # GET; -d '{...}' for a POST",
    "publish": "mecha publish pubsub orders '{\"id\": 1}'",
    "run": "mecha run --app-id orders --app-port 8080 -- python app.py",
    "history": "mecha history",
    "rollback": "mecha rollback 3",
    "dashboard": "mecha dashboard",
    "get": "mecha get gateways,httproutes -A          # -o yaml: whole objects with their status",
    "credential": "mecha credential issue --proxy-id reviews-v1 -o reviews.cred",
    "store": "mecha store migrate --store postgresql://mecha@127.0.0.1/mecha",
    "agent": "mecha agent --credential reviews.cred --socket-dir ./agent-reviews",
    "issue": "mecha credential issue --proxy-id reviews-v1 -o reviews.cred",
    "revoke": "mecha credential revoke --proxy-id reviews-v1",
    "migrate": "mecha store migrate --store postgresql://mecha@127.0.0.1/mecha",
    "keys": "mecha keys init --state-dir ./replica-keys   # then hand its files to every replica",
    "init": "mecha keys init --state-dir ./replica-keys   # then hand its files to every replica",
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Appends "(default: X)" to an option's help when X says something (not None/False/empty)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default in (None, False, "", [], argparse.SUPPRESS)
            or action.option_strings == []
        ):
            return text
        return f"{text} (default: %(default)s)"


def subparsers(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """(command name, parser) of every subcommand, nested ones included (`store migrate`)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield name, child
                yield from subparsers(child)


def finish(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Every subcommand: the same formatter, --log-level accepted after it too (`mecha serve --log-level
    debug`; SUPPRESS keeps the global value when absent), and its example under its help."""
    parser.formatter_class = HelpFormatter
    for name, child in subparsers(parser):
        child.formatter_class = HelpFormatter
        if not any("--log-level" in a.option_strings for a in child._actions):
            child.add_argument(
                "--log-level", choices=LOG_LEVELS, default=argparse.SUPPRESS, help="as the global --log-level"
            )
        example = EXAMPLES.get(name)
        if example and not child.epilog:
            child.epilog = f"example:\n  {example}"
    return parser
