"""The honoured-fields table of docs/migration-from-istio.md, generated from the field tables.

    .venv/bin/python -m xds.analyze.doc_table --write docs/migration-from-istio.md

rewrites the text between the BEGIN/END markers; tests/xds/istio/test_docs_table.py fails when it is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

from xds.model.schema import field_table
from xds.model.specs import SPEC_BY_KIND
from xds.sources.kinds import KIND_TABLE, Family

BEGIN = "<!-- BEGIN honoured-fields (generated: python -m xds.analyze.doc_table --write) -->"
END = "<!-- END honoured-fields -->"
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


def splice(document: str) -> str:
    head, sep, rest = document.partition(BEGIN)
    _, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        raise ValueError(f"markers {BEGIN!r} / {END!r} not found")
    return f"{head}{BEGIN}\n{markdown_table()}{END}{tail}"


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--write":
        path = Path(argv[1])
        path.write_text(splice(path.read_text()))
        return 0
    sys.stdout.write(markdown_table())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
