"""Where the command's tables go: the terminal, or a file or CI log."""

from __future__ import annotations

from rich.console import Console


def wide_console(width: int = 110, **kwargs) -> Console:
    """A console that keeps tables whole when output goes to a file or CI log.

    On a terminal it is the terminal's own width; elsewhere rich would assume
    80 columns and cut the tables' cells.
    """
    console = Console(**kwargs)
    return console if console.is_terminal else Console(width=width, **kwargs)
