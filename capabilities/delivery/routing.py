"""The CEL subset Dapr users write in subscription `routes.rules[].match`, evaluated safely (no eval).

Supported: `event.<field>[.<field>...]` and `event["field"]`, string/number/bool/null literals, lists
`[a, b]`, `== != < <= > >=`, `&& || !`, `in`, parentheses, `+ -` on numbers/strings, `has(event.x)`,
`size(x)` and the methods `startsWith`, `endsWith`, `contains`, `matches`. A missing field is an error,
and as in CEL `true || error` is true and `false && error` is false; an expression that ends in an error
does not match.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

_TOKEN = re.compile(
    r"""\s*(?:
    (?P<num>\d+\.\d*(?:[eE][+-]?\d+)?|\d+(?:[eE][+-]?\d+)?[uU]?)
  | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<op>&&|\|\||==|!=|<=|>=|[<>!().,\[\]+\-])
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'"}


class CelError(ValueError):
    """The expression is not valid in the supported subset (reported when a subscription is loaded)."""


class EvalError(Exception):
    """Evaluation failed for this event (missing field, type mismatch): the rule does not match."""


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    pos: int


def _tokenize(expr: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    while pos < len(expr):
        if expr[pos:].strip() == "":
            break
        match = _TOKEN.match(expr, pos)
        if not match or match.end() == pos:
            raise CelError(f"unexpected character {expr[pos:].lstrip()[:1]!r} at offset {pos} in {expr!r}")
        kind = match.lastgroup or ""
        tokens.append(_Tok(kind, match.group(kind), match.start(kind)))
        pos = match.end()
    tokens.append(_Tok("end", "", len(expr)))
    return tokens


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)


Node = Callable[[dict[str, Any]], Any]


class _Parser:
    """Precedence (low -> high): ||, &&, relations (== != < <= > >= in), + -, unary !/-, member/call."""

    def __init__(self, expr: str):
        self.expr = expr
        self.tokens = _tokenize(expr)
        self.i = 0

    def peek(self) -> _Tok:
        return self.tokens[self.i]

    def take(self, text: str | None = None) -> _Tok:
        tok = self.tokens[self.i]
        if text is not None and tok.text != text:
            found = tok.text or "end of expression"
            raise CelError(f"expected {text!r} at offset {tok.pos} in {self.expr!r}, found {found!r}")
        self.i += 1
        return tok

    def parse(self) -> Node:
        node = self.or_()
        if self.peek().kind != "end":
            tok = self.peek()
            raise CelError(f"unexpected {tok.text!r} at offset {tok.pos} in {self.expr!r}")
        return node

    def or_(self) -> Node:
        node = self.and_()
        while self.peek().text == "||":
            self.take()
            node = _or(node, self.and_())
        return node

    def and_(self) -> Node:
        node = self.relation()
        while self.peek().text == "&&":
            self.take()
            node = _and(node, self.relation())
        return node

    def relation(self) -> Node:
        node = self.additive()
        while self.peek().text in ("==", "!=", "<", "<=", ">", ">=", "in"):
            op = self.take().text
            node = _binary(op, node, self.additive())
        return node

    def additive(self) -> Node:
        node = self.unary()
        while self.peek().text in ("+", "-"):
            op = self.take().text
            node = _binary(op, node, self.unary())
        return node

    def unary(self) -> Node:
        if self.peek().text == "!":
            self.take()
            inner = self.unary()
            return lambda env: not _bool(inner(env))
        if self.peek().text == "-":
            self.take()
            inner = self.unary()
            return lambda env: -_number(inner(env))
        return self.member()

    def member(self) -> Node:
        node = self.primary()
        while self.peek().text in (".", "["):
            if self.take().text == ".":
                name = self.take_name()
                if self.peek().text == "(":
                    node = _method(name, node, self.arguments(), self.expr)
                else:
                    node = _field(node, name)
            else:
                key = self.or_()
                self.take("]")
                node = _index(node, key)
        return node

    def take_name(self) -> str:
        tok = self.take()
        if tok.kind != "name":
            raise CelError(f"expected a field name at offset {tok.pos} in {self.expr!r}")
        return tok.text

    def arguments(self) -> list[Node]:
        self.take("(")
        args: list[Node] = []
        while self.peek().text != ")":
            args.append(self.or_())
            if self.peek().text != ")":
                self.take(",")
        self.take(")")
        return args

    def primary(self) -> Node:
        tok = self.take()
        if tok.kind == "num":
            text = tok.text.rstrip("uU")
            value: Any = float(text) if any(c in text for c in ".eE") else int(text)
            return lambda env: value
        if tok.kind == "str":
            text = _unquote(tok.text)
            return lambda env: text
        if tok.text == "(":
            node = self.or_()
            self.take(")")
            return node
        if tok.text == "[":
            items: list[Node] = []
            while self.peek().text != "]":
                items.append(self.or_())
                if self.peek().text != "]":
                    self.take(",")
            self.take("]")
            return lambda env: [item(env) for item in items]
        if tok.kind == "name":
            return self.name(tok)
        raise CelError(f"unexpected {tok.text or 'end of expression'!r} at offset {tok.pos} in {self.expr!r}")

    def name(self, tok: _Tok) -> Node:
        constants = {"true": True, "false": False, "null": None}
        if tok.text in constants:
            value = constants[tok.text]
            return lambda env: value
        if tok.text in ("has", "size") and self.peek().text == "(":
            args = self.arguments()
            if len(args) != 1:
                raise CelError(f"{tok.text}() takes one argument in {self.expr!r}")
            return _has(args[0]) if tok.text == "has" else _size(args[0])
        name = tok.text
        if name != "event":
            raise CelError(
                f"unknown identifier {name!r} at offset {tok.pos} in {self.expr!r} (use event.<field>)"
            )
        return lambda env: env


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise EvalError(f"expected a bool, got {type(value).__name__}")
    return value


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EvalError(f"expected a number, got {type(value).__name__}")
    return value


def _or(left: Node, right: Node) -> Node:
    def run(env: dict[str, Any]) -> bool:
        try:
            if _bool(left(env)):
                return True
        except EvalError:
            if _bool(right(env)):
                return True
            raise
        return _bool(right(env))

    return run


def _and(left: Node, right: Node) -> Node:
    def run(env: dict[str, Any]) -> bool:
        try:
            if not _bool(left(env)):
                return False
        except EvalError:
            if not _bool(right(env)):
                return False
            raise
        return _bool(right(env))

    return run


def _compare(op: str, a: Any, b: Any) -> bool:
    if op == "==":
        return bool(a == b)
    if op == "!=":
        return bool(a != b)
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (a, b))
    if not numbers and not (isinstance(a, str) and isinstance(b, str)):
        raise EvalError(f"cannot compare {type(a).__name__} {op} {type(b).__name__}")
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def _binary(op: str, left: Node, right: Node) -> Node:
    def run(env: dict[str, Any]) -> Any:
        a, b = left(env), right(env)
        if op == "in":
            if not isinstance(b, list | dict | str):
                raise EvalError(f"'in' needs a list or map on the right, got {type(b).__name__}")
            return a in b
        if op in ("+", "-"):
            if op == "+" and isinstance(a, str) and isinstance(b, str):
                return a + b
            return _number(a) + _number(b) if op == "+" else _number(a) - _number(b)
        return _compare(op, a, b)

    return run


def _field(node: Node, name: str) -> Node:
    def run(env: dict[str, Any]) -> Any:
        value = node(env)
        if not isinstance(value, dict) or name not in value:
            raise EvalError(f"no such key: {name}")
        return value[name]

    return run


def _index(node: Node, key: Node) -> Node:
    def run(env: dict[str, Any]) -> Any:
        value, k = node(env), key(env)
        try:
            return value[k]
        except (KeyError, IndexError, TypeError):
            raise EvalError(f"no such key: {k!r}") from None

    return run


def _has(arg: Node) -> Node:
    def run(env: dict[str, Any]) -> bool:
        try:
            arg(env)
        except EvalError:
            return False
        return True

    return run


def _size(arg: Node) -> Node:
    def run(env: dict[str, Any]) -> int:
        value = arg(env)
        if not isinstance(value, str | list | dict):
            raise EvalError(f"size() of {type(value).__name__}")
        return len(value)

    return run


_METHODS: dict[str, Callable[[str, str], bool]] = {
    "startsWith": str.startswith,
    "endsWith": str.endswith,
    "contains": lambda s, sub: sub in s,
    "matches": lambda s, pattern: re.search(pattern, s) is not None,
}


def _method(name: str, target: Node, args: list[Node], expr: str) -> Node:
    fn = _METHODS.get(name)
    if fn is None:
        raise CelError(f"unsupported function {name}() in {expr!r} (supported: {', '.join(_METHODS)})")
    if len(args) != 1:
        raise CelError(f"{name}() takes one argument in {expr!r}")
    (arg,) = args

    def run(env: dict[str, Any]) -> bool:
        s, a = target(env), arg(env)
        if not isinstance(s, str) or not isinstance(a, str):
            raise EvalError(f"{name}() works on strings")
        return fn(s, a)

    return run


@lru_cache(maxsize=1024)
def compile_match(expr: str) -> Node:
    """Parse once; raise CelError naming the offset and expression when it is outside the subset."""
    if not expr.strip():
        return lambda env: True
    return _Parser(expr).parse()


def matches(expr: str, event: dict[str, Any]) -> bool:
    """Does the CloudEvent satisfy the rule? An evaluation error means no match (as in Dapr)."""
    node = compile_match(expr)
    try:
        return node(event) is True
    except EvalError:
        return False
