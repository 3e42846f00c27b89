"""Aggregate counters exposed at ``/metrics`` in the Prometheus text format.

Only process-wide aggregates: no label ever carries a mailbox, envelope, key or address.
"""

from __future__ import annotations

from collections import Counter

__all__ = ["Metrics"]


class Metrics:
    """Counters and gauges of one relay process."""

    def __init__(self) -> None:
        self.counters: Counter[tuple[str, str]] = Counter()
        self.connections = 0

    def inc(self, name: str, label: str = "", amount: int = 1) -> None:
        self.counters[(name, label)] += amount

    def render(self, stored_envelopes: int | None, backend: str) -> str:
        lines = [
            "# HELP blindrelay_connections Open WebSocket connections.",
            "# TYPE blindrelay_connections gauge",
            f"blindrelay_connections {self.connections}",
        ]
        if stored_envelopes is not None:
            lines += [
                "# HELP blindrelay_stored_envelopes Envelopes waiting in storage.",
                "# TYPE blindrelay_stored_envelopes gauge",
                f'blindrelay_stored_envelopes{{backend="{backend}"}} {stored_envelopes}',
            ]
        names = sorted({name for name, _ in self.counters})
        for name in names:
            lines.append(f"# TYPE blindrelay_{name}_total counter")
            for (n, label), value in sorted(self.counters.items()):
                if n != name:
                    continue
                if label:
                    lines.append(f'blindrelay_{name}_total{{kind="{label}"}} {value}')
                else:
                    lines.append(f"blindrelay_{name}_total {value}")
        return "\n".join(lines) + "\n"
