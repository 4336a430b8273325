"""`mecha keys init`: what a control plane keeps in its state folder, made without starting one.

Replicas must share these (docs/operations.md "Replicas on PostgreSQL"): the credential signing key, the CA
root (or Istio's plug-in `cacerts` instead) and the API tokens. An operator makes them once into a private
folder and hands them to every replica as files (Kubernetes Secrets); none of them goes into the database.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DEFAULT_TRUST_DOMAIN = "cluster.local"  # = xds.ca.authority's (that module imports cryptography)


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("keys", help="make the keys and tokens of a state folder (shared by replicas)")
    ksub = p.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    init = ksub.add_parser(
        "init",
        help="signing key, CA root and API tokens in --state-dir (kept if present), printed as JSON paths",
    )
    init.add_argument("--state-dir", required=True, help="folder to fill (made 0700; files 0600)")
    init.add_argument("--trust-domain", default=DEFAULT_TRUST_DOMAIN, help="SPIFFE trust domain of the root")


def init_state(state_dir: Path, trust_domain: str = DEFAULT_TRUST_DOMAIN) -> dict[str, str]:
    """The files a first `mecha serve --state-dir` would create, each kept when already there."""
    from xds.ca.authority import ROOT_CERT_FILE, ROOT_KEY_FILE, CertificateAuthority
    from xds.controlplane.auth import READER_TOKEN_FILE, load_or_create_token
    from xds.identity.controlplane import CA_FOLDER
    from xds.identity.credential import SIGNING_KEY_FILE, CredentialIssuer
    from xds.statedir import API_TOKEN_FILE, ensure_private_dir

    ensure_private_dir(state_dir)
    CredentialIssuer.load_or_create(state_dir)
    ca_dir = state_dir / CA_FOLDER
    CertificateAuthority.load_or_create(ca_dir, trust_domain)
    for token in (API_TOKEN_FILE, READER_TOKEN_FILE):
        load_or_create_token(state_dir / token)
    return {
        "signing_key": str(state_dir / SIGNING_KEY_FILE),
        "root_cert": str(ca_dir / ROOT_CERT_FILE),
        "root_key": str(ca_dir / ROOT_KEY_FILE),
        "api_token": str(state_dir / API_TOKEN_FILE),
        "reader_token": str(state_dir / READER_TOKEN_FILE),
    }


def cmd_keys(args: argparse.Namespace) -> int:
    try:
        made = init_state(Path(args.state_dir), args.trust_domain)
    except OSError as exc:  # ValueError (a bad CA folder, a foreign key) names its file and reaches main
        where = f"--state-dir {args.state_dir}"
        raise ValueError(f"{where}: cannot write {exc.filename}: {exc.strerror}") from None
    print(json.dumps(made, indent=1))
    return 0
