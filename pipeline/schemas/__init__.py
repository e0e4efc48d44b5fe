"""The JSON Schemas of every configuration file (*.schema.json), shipped as package data.

`metric_ranges` is the one part generated from code: the promotion schema's `$defs.metric_ranges`
bounds each threshold by the range its metric can take (pipeline.metrics.RANGE).
tests/unit/test_policy.py checks the committed schema equals what this returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _side(key: str, value: float | None) -> dict[str, float]:
    return {} if value is None else {key: value}


def metric_ranges(ranges: Mapping[str, tuple[float | None, float | None]]) -> dict[str, Any]:
    """One if/then per distinct range: thresholds inside it, an absolute tolerance no wider."""
    groups: dict[tuple[float | None, float | None], list[str]] = {}
    for name, span in ranges.items():
        groups.setdefault(span, []).append(name)
    rules = []
    for (low, high), names in sorted(groups.items(), key=lambda item: sorted(item[1])[0]):
        bound = _side("minimum", low) | _side("maximum", high)
        then: dict[str, Any] = {"min": bound, "max": bound}
        if low is not None and high is not None:
            then["abs_tolerance"] = {"maximum": high - low}
        rules.append(
            {
                "if": {"required": ["metric"], "properties": {"metric": {"enum": sorted(names)}}},
                "then": {"properties": then},
            }
        )
    return {"allOf": rules}
