"""How deeply a parsed document nests: one check for every place that takes nested data
from outside (API JSON bodies, scenario documents), so a hostile document is refused before
recursive code (validation, serialisation) meets it.
"""

from __future__ import annotations

from typing import Any


def nesting_depth(value: Any) -> int:
    """How many levels of mappings and lists ``value`` has (parsed JSON or YAML).

    A scalar is 0, ``[]`` and ``{}`` are 1, ``[[1]]`` is 2. Mapping keys count as well as
    values (a YAML key may itself be a list). Iterative, so it never hits the recursion
    limit itself.
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: list[Any] = [*item.keys(), *item.values()]
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level + 1)
        stack.extend((child, level + 1) for child in children)
    return deepest
