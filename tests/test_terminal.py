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
