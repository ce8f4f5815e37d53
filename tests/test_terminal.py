"""The command's tables keep their width when output goes to a file or CI log."""

from keras_graft.terminal import wide_console


def test_tables_are_not_cut_to_80_columns_outside_a_terminal(capsys):
    console = wide_console(140)
    assert not console.is_terminal and console.width == 140
    console.print("x" * 130)
    assert "x" * 130 in capsys.readouterr().out


def test_console_arguments_pass_through(capsys):
    console = wide_console(120, stderr=True)
    console.print("to standard error")
    captured = capsys.readouterr()
    assert "to standard error" in captured.err and not captured.out


def test_text_from_a_file_prints_as_itself_visibly():
    from rich.console import Console

    from keras_graft.terminal import escape, visible

    forged = "a\x1b[2K\x1b]8;;http://x\x07b\r\b\u202ec\u2066d\u200be\nf\t[bold red]g[/]:smile:"
    console = wide_console(200, record=True)
    console.print(escape(forged))
    printed = console.export_text()
    assert printed.strip() == (
        r"a\x1b[2K\x1b]8;;http://x\x07b\r\x08\u202ec\u2066d\u200be\nf\t"
        "[bold red]g[/]:smile:"
    )
    assert visible("plain café ünïcode") == "plain café ünïcode"  # printable text unchanged
    assert escape("[link=http://x]y[/link]") == r"\[link=http://x]y\[/link]"
    assert Console(emoji=False).render_str(":smile:").plain == ":smile:"
