"""Per-image failures as people read them: one line per distinct reason, however many images share it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

__all__ = ["format_failures"]


def format_failures(failed: Mapping[str, str], verb: str = "FAILED", max_lines: int = 20) -> list[str]:
    """Renders {image name: reason} grouped by reason, most frequent first, at most `max_lines` lines."""
    by_reason: dict[str, list[str]] = defaultdict(list)
    for name, reason in failed.items():
        by_reason[reason].append(name)
    groups = sorted(by_reason.items(), key=lambda item: -len(item[1]))
    lines = []
    for reason, names in groups[:max_lines]:
        if len(names) == 1:
            lines.append(f"  {verb} {names[0]}: {reason}")
        else:
            examples = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            lines.append(f"  {verb} {len(names):,} images: {reason} (e.g. {examples})")
    if len(groups) > max_lines:
        rest = sum(len(names) for _, names in groups[max_lines:])
        lines.append(f"  ... and {rest:,} more images failed for {len(groups) - max_lines} other reasons")
    return lines
