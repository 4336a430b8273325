"""docs/migration-from-istio.md's honoured-fields table and "What differs" section, generated from the field
tables and from xds.analyze.differences (whose claims about fields the field tables must confirm).

    .venv/bin/python -m xds.analyze.doc_table --write docs/migration-from-istio.md

rewrites the text between each pair of BEGIN/END markers; tests/xds/istio/test_docs_table.py fails when
either is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

from xds.analyze import differences
from xds.model.schema import field_table
from xds.model.specs import SPEC_BY_KIND
from xds.sources.kinds import KIND_TABLE, Family

BEGIN = "<!-- BEGIN honoured-fields (generated: python -m xds.analyze.doc_table --write) -->"
END = "<!-- END honoured-fields -->"
DIFF_BEGIN = "<!-- BEGIN differences (generated: python -m xds.analyze.doc_table --write) -->"
DIFF_END = "<!-- END differences -->"
_STATUS = {"honoured": "yes", "differs": "differently", "unsupported": "**no**"}


def istio_kinds() -> list[str]:
    kinds = {i.kind for i in KIND_TABLE.values() if i.family is not Family.DAPR}
    return sorted(k for k in kinds if k in SPEC_BY_KIND)


def markdown_table() -> str:
    lines: list[str] = []
    for kind in istio_kinds():
        lines += [f"### {kind}", "", "| field | honoured | how / why |", "|---|---|---|"]
        for path, declared in field_table(SPEC_BY_KIND[kind], "spec"):
            why = declared.why.replace("|", "\\|")
            lines.append(f"| `{path}` | {_STATUS[declared.status]} | {why} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _splice_between(document: str, begin: str, end: str, body: str) -> str:
    head, sep, rest = document.partition(begin)
    _, sep2, tail = rest.partition(end)
    if not sep or not sep2:
        raise ValueError(f"markers {begin!r} / {end!r} not found")
    return f"{head}{begin}\n{body}{end}{tail}"


def splice(document: str) -> str:
    document = _splice_between(document, DIFF_BEGIN, DIFF_END, differences.markdown())
    return _splice_between(document, BEGIN, END, markdown_table())


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--write":
        path = Path(argv[1])
        path.write_text(splice(path.read_text()))
        return 0
    sys.stdout.write(markdown_table())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
