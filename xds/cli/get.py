"""`mecha get TYPE[,TYPE...] [NAME...] [-n NS | -A] [-o yaml|json|wide]`: Gateway API objects with their
status, as `kubectl get` shows them. Reads the stored documents (GET /api/v1/config) and the status the
control plane computes (GET /api/v1/gateway-api/status), with the API token as every read."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from xds.cli.client import Client
from xds.cli.gateway_kinds import GROUP, ResourceType, UnknownType, parse_types

STATUS_PATH = "/api/v1/gateway-api/status"
READ_ATTEMPTS = 3  # the config may change between the two reads: read both again until they agree


class GetError(ValueError):
    """Bad arguments or nothing by that name: exit 1 with the message, as kubectl does."""


def add_parser(sub: Any, add_server: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("get", help="Gateway API objects and their status, as `kubectl get` shows them")
    p.add_argument(
        "types",
        metavar="TYPE[,TYPE...]",
        help="gatewayclasses (gc), gateways (gtw), httproutes, grpcroutes, tlsroutes, tcproutes, udproutes, "
        "referencegrants (refgrant), backendtlspolicies; or TYPE/NAME",
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="only these objects (of the one TYPE given)")
    p.add_argument("-n", "--namespace", default=None, help="the namespace (default: default)")
    p.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    p.add_argument(
        "-o",
        "--output",
        choices=["table", "wide", "yaml", "json"],
        default="table",
        help="table; wide (listeners, parents, accepted); yaml/json: whole objects with their status",
    )
    add_server(p)


def _request(args: argparse.Namespace) -> tuple[list[ResourceType], list[str]]:
    spec, names = args.types, list(args.names)
    if "/" in spec:  # kubectl's TYPE/NAME form
        spec, _, name = spec.partition("/")
        if not name or "," in spec:
            raise GetError(f"{args.types!r}: expected TYPE/NAME")
        names.insert(0, name)
    types = parse_types(spec)
    if names and len(types) > 1:
        raise GetError("names can only be given with one resource type (kubectl's rule)")
    if args.all_namespaces and args.namespace:
        raise GetError("-n and -A are exclusive")
    return types, names


def fetch(client: Client, namespace: str | None) -> tuple[list[dict[str, Any]], dict[tuple[str, ...], Any]]:
    """(stored Gateway API documents, status by (kind, namespace, name)) of one config version."""
    query = f"?namespace={namespace}" if namespace else ""
    for _ in range(READ_ATTEMPTS):
        config = client.get("/api/v1/config")
        status = client.get(STATUS_PATH + query)
        if config.get("version") == status.get("version"):
            break
    documents = [
        d for d in config.get("documents") or [] if str(d.get("apiVersion", "")).rpartition("/")[0] == GROUP
    ]
    by_key: dict[tuple[str, ...], Any] = {}
    for item in status.get("items") or []:
        meta = item.get("metadata") or {}
        by_key[(item.get("kind", ""), meta.get("namespace", ""), meta.get("name", ""))] = item
    return documents, by_key


def merged(doc: dict[str, Any], status_item: dict[str, Any] | None) -> dict[str, Any]:
    """The object as the API server would hold it: the stored body, the status the control plane computed."""
    body = dict(doc.get("body") or {})
    meta = dict(body.get("metadata") or {})
    if status_item is not None:
        meta.update(status_item.get("metadata") or {})  # generation, creationTimestamp as the store keeps
        body["metadata"] = meta
        body["status"] = status_item.get("status") or {}
    else:
        body["metadata"] = meta
        body.pop("status", None)  # what a file said is not status; the control plane computed none
    return body


def cmd_get(args: argparse.Namespace) -> int:
    try:
        types, names = _request(args)
    except UnknownType as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except GetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    namespace = None if args.all_namespaces else (args.namespace or "default")
    documents, statuses = fetch(Client(args.server, args.token), namespace)
    wanted = {t.kind: t for t in types}
    objects: list[tuple[ResourceType, dict[str, Any]]] = []
    elsewhere = 0
    for doc in documents:
        rtype = wanted.get(doc.get("kind", ""))
        if rtype is None or (names and doc.get("name") not in names):
            continue
        if namespace and rtype.namespaced and doc.get("namespace") != namespace:
            elsewhere += 1
            continue
        key = (rtype.kind, doc.get("namespace", "") if rtype.namespaced else "", doc.get("name", ""))
        item = statuses.get(key) or statuses.get((rtype.kind, doc.get("namespace", ""), doc.get("name", "")))
        objects.append((rtype, merged(doc, item)))
    objects.sort(key=lambda o: (types.index(o[0]), _ns(o[1]), _name(o[1])))
    missing = [n for n in names if not any(_name(obj) == n for _t, obj in objects)]
    code = 0
    for name in missing:  # kubectl: the others are still shown, the exit code says some were not found
        where = f' in namespace "{namespace}"' if namespace and types[0].namespaced else ""
        print(
            f'Error from server (NotFound): {types[0].plural}.{GROUP} "{name}" not found{where}',
            file=sys.stderr,
        )
        code = 1
    if args.output in ("yaml", "json"):
        if objects or not missing:
            _print_objects([o for _t, o in objects], args.output, single=bool(names) and len(names) == 1)
        return code
    if not objects:
        if not missing:
            where = f"in {namespace} namespace" if namespace else ""
            hint = f" ({elsewhere} in other namespaces: -A lists them)" if elsewhere else ""
            print(f"No resources found {where}.".replace(" .", ".") + hint, file=sys.stderr)
        return code
    from xds.cli.gateway_tables import render_tables

    print(render_tables(objects, types, all_namespaces=namespace is None, wide=args.output == "wide",
                        now=datetime.now(UTC)))  # fmt: skip
    return code


def _print_objects(objects: list[dict[str, Any]], output: str, single: bool) -> None:
    shown: Any = objects[0] if single and len(objects) == 1 else {
        "apiVersion": "v1", "kind": "List", "items": objects, "metadata": {"resourceVersion": ""}
    }  # fmt: skip
    if output == "json":
        print(json.dumps(shown, indent=4))
        return
    import yaml

    print(yaml.safe_dump(shown, sort_keys=False, default_flow_style=False, width=120), end="")


def _ns(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "")


def _name(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")
