"""A small registry so several modules can add commands under shared groups (`otphsm sim …`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

Handler = Callable[[argparse.Namespace], int]


class CommandTree:
    """Get-or-create nested command groups: `tree.group("sim", "card").add_parser("issue")`."""

    def __init__(self, root: argparse._SubParsersAction[Any]) -> None:
        self._groups: dict[tuple[str, ...], argparse._SubParsersAction[Any]] = {(): root}

    def group(self, *path: str, help: str | None = None) -> argparse._SubParsersAction[Any]:
        existing = self._groups.get(path)
        if existing is not None:
            return existing
        parent = self.group(*path[:-1])
        parser = parent.add_parser(path[-1], help=help)
        subparsers: argparse._SubParsersAction[Any] = parser.add_subparsers(
            dest="_".join(("cmd", *path)), required=True, metavar="COMMAND"
        )
        self._groups[path] = subparsers
        return subparsers

    def command(
        self, *path: str, handler: Handler, help: str | None = None
    ) -> argparse.ArgumentParser:
        """Add the leaf command `path` (e.g. "sim", "hsm", "init") calling `handler(args)`."""
        parser: argparse.ArgumentParser = self.group(*path[:-1]).add_parser(path[-1], help=help)
        parser.set_defaults(handler=handler)
        return parser
