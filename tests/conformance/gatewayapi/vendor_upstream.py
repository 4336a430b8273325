"""Vendor the Gateway API conformance suite's manifests and test index from a kubernetes-sigs/gateway-api git
checkout: `python tests/conformance/gatewayapi/vendor_upstream.py GIT_DIR REF`.

The YAML files are copied verbatim (Apache-2.0, see upstream/LICENSE); upstream/tests.json lists every Go
test's ShortName, features, manifests and whether it is provisional, read from the Go sources, so the
runner and the report know which tests each profile holds without a Go toolchain."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent / "upstream"
_CONST = re.compile(r"(Support\w+)\s+(?:FeatureName\s*)?=\s*\"([^\"]+)\"")
_TEST = re.compile(r"var (\w+) = (?:confsuite|suite)\.ConformanceTest\{(.*?)\n\s*Test:", re.S)
_SHORT = re.compile(r"ShortName:\s*\"([^\"]+)\"")
_FEATURES = re.compile(r"Features:\s*\[\]features\.FeatureName\{(.*?)\}", re.S)
_MANIFESTS = re.compile(r"Manifests:\s*\[\]string\{(.*?)\}", re.S)


def git(repo: str, *args: str) -> str:
    return subprocess.run(["git", "-C", repo, *args], check=True, capture_output=True, text=True).stdout


def main(repo: str, ref: str) -> None:
    commit = git(repo, "rev-parse", f"{ref}^{{commit}}").strip()
    files = git(repo, "ls-tree", "-r", "--name-only", commit, "conformance/", "pkg/features/").split()
    consts: dict[str, str] = {}
    for name in (f for f in files if f.startswith("pkg/features/") and f.endswith(".go")):
        consts.update(_CONST.findall(git(repo, "show", f"{commit}:{name}")))
    tests = []
    for name in sorted(f for f in files if re.match(r"conformance/tests/(mesh/)?[^/]+\.(go|yaml)$", f)):
        text = git(repo, "show", f"{commit}:{name}")
        if name.endswith(".yaml"):
            out = HERE / name.removeprefix("conformance/")
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text)
            continue
        for _var, body in _TEST.findall(text):
            short = _SHORT.search(body)
            feats = _FEATURES.search(body)
            mans = _MANIFESTS.search(body)
            tests.append(
                {
                    "shortName": short.group(1) if short else _var,
                    "source": name.removeprefix("conformance/"),
                    "features": sorted(
                        consts[c] for c in re.findall(r"features\.(Support\w+)", feats.group(1))
                    )
                    if feats
                    else [],
                    "manifests": re.findall(r"\"([^\"]+)\"", mans.group(1)) if mans else [],
                    "provisional": "Provisional: true" in body or "Provisional:  true" in body,
                    "mesh": "/mesh/" in name,
                }
            )
    for base in ("base", "mesh"):  # the shared manifests: Gateway tests' and the mesh tests' (MESH-HTTP)
        (HERE / base).mkdir(parents=True, exist_ok=True)
        (HERE / base / "manifests.yaml").write_text(
            git(repo, "show", f"{commit}:conformance/{base}/manifests.yaml")
        )
    (HERE / "LICENSE").write_text(git(repo, "show", f"{commit}:LICENSE"))
    source = {"repository": "https://github.com/kubernetes-sigs/gateway-api", "ref": ref, "commit": commit}
    (HERE / "tests.json").write_text(json.dumps({**source, "tests": tests}, indent=1) + "\n")
    print(f"vendored {len(tests)} tests from {ref} ({commit})")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
