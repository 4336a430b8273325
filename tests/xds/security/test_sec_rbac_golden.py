"""AuthorizationPolicy -> RBAC compared with istiod's own golden files (tests/xds/security/istio_golden)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import betterproto2
import pytest
import yaml

from xds.model.security import security_policies
from xds.pipeline import compile_documents, load_text
from xds.translate.security.rbac import rbac_configs

GOLDEN = Path(__file__).parent / "istio_golden"
CASES = sorted(p.name.removesuffix("-in.yaml") for p in GOLDEN.glob("*-in.yaml"))
_DEPRECATED_HEADER = {
    "exactMatch": "exact",
    "prefixMatch": "prefix",
    "suffixMatch": "suffix",
    "safeRegexMatch": "safeRegex",
}


def normalise(value: Any) -> Any:
    """Deprecated header fields -> stringMatch; drop the googleRe2 marker (gone from Envoy's API)."""
    if isinstance(value, list):
        return [normalise(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: normalise(v) for k, v in value.items() if k != "googleRe2"}
    for old, new in _DEPRECATED_HEADER.items():
        if old in out:
            out["stringMatch"] = {new: out.pop(old)}
    return out


def translate(case: str) -> list[dict[str, Any]]:
    docs, diags = load_text((GOLDEN / f"{case}-in.yaml").read_text(), f"{case}-in.yaml")
    result = compile_documents(docs)
    assert result.ok and not diags, [str(d) for d in result.diagnostics]
    assert result.config is not None
    configs = rbac_configs(list(security_policies(result.config.carried).authz))
    return [normalise(c.to_dict(casing=betterproto2.Casing.CAMEL)["rules"]) for c in configs]


@pytest.mark.parametrize("case", CASES)
def test_rbac_matches_istio_golden(case: str) -> None:
    expected = [normalise(yaml.safe_load(p.read_text())["typedConfig"]["rules"]) for p in _outputs(case)]
    assert translate(case) == expected


def _outputs(case: str) -> list[Path]:
    single = GOLDEN / f"{case}-out.yaml"
    return [single] if single.exists() else sorted(GOLDEN.glob(f"{case}-out*.yaml"))


def test_every_golden_case_is_present() -> None:
    assert {"single-policy", "allow-empty-rule", "allow-nil-rule", "deny-empty-rule"} <= set(CASES)
