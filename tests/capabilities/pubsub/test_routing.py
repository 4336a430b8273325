"""The CEL subset used in subscription rules: what matches, what does not, what is refused."""

from __future__ import annotations

import pytest

from capabilities.delivery.routing import CelError, compile_match, matches

EVENT = {
    "type": "order.created",
    "source": "checkout",
    "data": {"qty": 7, "price": 2.5, "tags": ["a", "b"], "customer": {"tier": "gold"}},
}


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('event.type == "order.created"', True),
        ("event.type == 'order.deleted'", False),
        ("event.data.qty > 5", True),
        ("event.data.qty > 5 && event.data.price < 2", False),
        ('event.data.qty > 100 || event.source == "checkout"', True),
        ('!(event.type == "x")', True),
        ('"a" in event.data.tags', True),
        ('event.data.customer.tier in ["gold", "platinum"]', True),
        ('event.type.startsWith("order.")', True),
        ('event.data["customer"]["tier"] == "gold"', True),
        ("event.data.missing > 1", False),  # missing field: an error, so no match
        ("event.data.missing > 1 || event.data.qty == 7", True),  # true || error is true
        ("has(event.data.customer) && !has(event.data.nope)", True),
        ("size(event.data.tags) == 2", True),
        ("event.data.qty + 3 >= 10", True),
        ("", True),
    ],
)
def test_matches(expr: str, expected: bool) -> None:
    assert matches(expr, EVENT) is expected


@pytest.mark.parametrize(
    "expr",
    [
        'event.type = "x"',
        "event.type ==",
        "os.system('x')",
        "__import__('os')",
        'event.type.lower() == "x"',
        "1 +* 2",
    ],
)
def test_invalid_expressions_are_refused_with_the_offset(expr: str) -> None:
    with pytest.raises(CelError) as info:
        compile_match(expr)
    assert expr in str(info.value)
