"""The translator is pure: it imports nothing of the cache, the CA or the xDS server, reads no file and issues
no certificate. What it needs of either (workload certificates, Gateway credential files) is resolved before
the build (xds.pipeline.SnapshotBuilder.resolve) and passed in."""

from __future__ import annotations

import ast
import builtins
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cfg_helpers import compile_text
from golden_harness import load_case, write_credentials

from xds.ca import CertificateAuthority, WorkloadCertificates
from xds.ca.authority import CertificateAuthority as Authority
from xds.credential_files import CredentialStore
from xds.pipeline import SnapshotBuilder
from xds.translate.builder import SnapshotBuilder as PureBuilder

ROOT = Path(__file__).resolve().parents[3]
TRANSLATE = ROOT / "xds" / "translate"
FORBIDDEN = ("xds.cache", "xds.ca", "xds.server")
GOLDEN = Path(__file__).parent / "golden"


def _forbidden(module: str) -> bool:
    return any(module == f or module.startswith(f + ".") for f in FORBIDDEN)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in the file, wherever it is (functions, TYPE_CHECKING blocks)."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            # `from xds import cache` names the package in the alias
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names if node.module == "xds"]
    return out


def test_translate_modules_import_nothing_of_cache_ca_or_server() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}: imports {module}"
        for path in sorted(TRANSLATE.rglob("*.py"))
        for line, module in _imports(path)
        if _forbidden(module)
    ]
    assert not found, "\n".join(found)


def test_importing_the_translator_loads_no_cache_ca_or_server_module() -> None:
    """Transitively too: a module the translator imports must not pull them in."""
    code = (
        "import sys, xds.translate, xds.translate.builder\n"
        "print('\\n'.join(sorted(m for m in sys.modules if m.split('.')[:2] in "
        "(['xds', 'cache'], ['xds', 'ca'], ['xds', 'server']))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "", out.stdout


def test_the_import_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    """The walk finds imports inside functions and `from xds import ca` too (it is not vacuous)."""
    sample = tmp_path / "sample.py"
    sample.write_text("from xds import ca\ndef f():\n    import xds.server.codec\n")
    assert [m for _, m in _imports(sample) if _forbidden(m)] == ["xds.ca", "xds.server.codec"]


class _Forbidden(AssertionError):
    pass


@pytest.mark.parametrize("case", ["gateway-https", "gateway-mtls", "mtls-strict"])
def test_build_reads_no_file_and_issues_no_certificate(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    golden = load_case(GOLDEN, case)
    result = compile_text(golden.text, f"{case}.in.yaml")
    assert result.config is not None
    write_credentials(tmp_path, golden.credentials)
    certs = WorkloadCertificates(CertificateAuthority()) if golden.mtls else None
    resolving = SnapshotBuilder(certs=certs, credentials=CredentialStore(tmp_path))
    proxies = list(golden.proxies)
    expected = resolving.build(result.config, proxies)
    inputs = resolving.resolve(result.config, proxies)  # the same certificates: none is due yet

    def refuse(*_: Any, **__: Any) -> Any:
        raise _Forbidden("the translator read a file or issued a certificate")

    monkeypatch.setattr(builtins, "open", refuse)
    monkeypatch.setattr(Path, "read_bytes", refuse)
    monkeypatch.setattr(Path, "read_text", refuse)
    monkeypatch.setattr(Path, "stat", refuse)
    monkeypatch.setattr(Authority, "issue", refuse)
    pure = PureBuilder(trust_domain=certs.trust_domain if certs else None)
    got = pure.build(result.config, proxies, inputs=inputs)
    monkeypatch.undo()
    assert not [w for w in pure.warnings if w.severity == "error"], [str(w) for w in pure.warnings]
    for proxy in proxies:
        want = {t: {n: r.version for n, r in m.items()} for t, m in expected[proxy.id].resources.items()}
        have = {t: {n: r.version for n, r in m.items()} for t, m in got[proxy.id].resources.items()}
        assert have == want
    assert any(expected[p.id].of(t) for p in proxies for t in expected[p.id].resources if "Secret" in t)
