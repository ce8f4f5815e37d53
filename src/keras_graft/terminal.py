r"""Where the command's tables go, and text from a model file made safe to print there.

A model file chooses its layer names, its model name and much of what error
messages quote. Printed raw, an escape sequence in a name could recolour,
hide or rewrite the verdicts around it (`\x1b[2K` erases the line, OSC 8
makes a link, `\r` and backspaces overwrite, U+202E reverses the text that
follows), and `rich` markup in it (`[green]Check passed[/]`) would be
rendered as markup. `escape` is the one helper every printer of file text
uses: control and format characters become visible escapes, then `rich`
markup is escaped.

>>> print(escape("clip[bold red]\x1b[2K\u202e"))
clip\[bold red]\x1b[2K\u202e
>>> print(visible("a\rb\nc"))
a\rb\nc
"""

from __future__ import annotations

import unicodedata

from rich.console import Console
from rich.markup import escape as escape_markup

# Control characters (C0, DEL, C1), format characters (bidi overrides and
# isolates, zero-width joiners...), line and paragraph separators, and lone
# surrogates: none of them shows as itself.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def visible(text) -> str:
    """`text` with every character that does not show as itself written out
    as its Python escape (`\x1b`, `\r`, `\n`, `\u202e`)."""
    return "".join(
        character.encode("unicode_escape", "backslashreplace").decode("ascii")
        if unicodedata.category(character) in _HIDDEN_CATEGORIES
        else character
        for character in str(text)
    )


def escape(text) -> str:
    """`text` (from a model file) as `rich` markup that prints exactly it, visibly."""
    return escape_markup(visible(text))


# The options of a table column of names (layers, ops, examples, workloads): a
# name too long for the column is shortened with an ellipsis, never wrapped
# or broken mid-word, and it leaves room for the other columns.
NAME_COLUMN = {"overflow": "ellipsis", "no_wrap": True, "max_width": 32}


def wide_console(width: int = 110, **kwargs) -> Console:
    """A console that keeps tables whole when output goes to a file or CI log.

    On a terminal it is the terminal's own width; elsewhere rich would assume
    80 columns and cut the tables' cells. Emoji codes stay text (a layer named
    `x:white_check_mark:` must not print a check mark).
    """
    kwargs.setdefault("emoji", False)
    console = Console(**kwargs)
    return console if console.is_terminal else Console(width=width, **kwargs)
