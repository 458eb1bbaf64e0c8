"""The benchmark report: markdown sections, each figure with the command that made it,
and the one table format every benchmark uses."""

from __future__ import annotations


class Report:
    """Collects markdown sections; each figure with the command that produced it."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def section(self, title: str, body: str, command: str) -> None:
        self.parts.append(f"## {title}\n\n{body.strip()}\n\nCommand: `{command}`\n")
        print(f"\n## {title}\n{body.strip()}\n", flush=True)


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
