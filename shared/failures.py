"""Per-image failures as people read them: one line per distinct reason, however many images share it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

__all__ = ["examples", "format_failures", "group_by_reason"]


def group_by_reason(outcomes: Mapping[str, str]) -> list[tuple[str, list[str]]]:
    """(reason, names) pairs from {name: reason}, the most frequent reason first, ties by reason."""
    by_reason: dict[str, list[str]] = defaultdict(list)
    for name, reason in outcomes.items():
        by_reason[reason].append(name)
    return sorted(by_reason.items(), key=lambda item: (-len(item[1]), item[0]))


def examples(names: list[str], count: int = 3) -> str:
    """The first few names, and an ellipsis when there are more."""
    return ", ".join(names[:count]) + (", ..." if len(names) > count else "")


def format_failures(failed: Mapping[str, str], verb: str = "FAILED", max_lines: int = 20) -> list[str]:
    """Renders {image name: reason} grouped by reason, most frequent first, at most `max_lines` lines."""
    groups = group_by_reason(failed)
    lines = []
    for reason, names in groups[:max_lines]:
        if len(names) == 1:
            lines.append(f"  {verb} {names[0]}: {reason}")
        else:
            lines.append(f"  {verb} {len(names):,} images: {reason} (e.g. {examples(names)})")
    if len(groups) > max_lines:
        rest = sum(len(names) for _, names in groups[max_lines:])
        lines.append(f"  ... and {rest:,} more images failed for {len(groups) - max_lines} other reasons")
    return lines
