"""The command's tables keep their width when output goes to a file or CI log."""

import io

import pytest
from rich.console import Console

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


LONG_NAME = "a_layer_name_far_too_long_for_any_column_of_a_narrow_table"


def _rendered(table, width: int) -> list[str]:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(table)
    return console.file.getvalue().splitlines()


@pytest.mark.parametrize("width", [60, 100])
def test_tables_shorten_names_with_an_ellipsis_never_wrapping_them(width):
    """The name columns of the demo's, the benchmark's and inspect's tables (`NAME_COLUMN`)."""
    from keras_graft.inspection.report import LayerReport, Report
    from keras_graft_tools import bench, demo

    report = Report(model="m")
    report.layers.append(
        LayerReport(
            LONG_NAME, "tf.math.sin", "TFOp", ["Sin"], [], [{"shape": [None, 3], "dtype": "float32"}], {}
        )
    )
    tables = {
        "demo": demo.summary_table([demo.ExampleResult(name=LONG_NAME)]),
        "bench": bench.side_by_side_table({f"{LONG_NAME} x50": {"keras.ops": [0.001, 0.002]}}, "machine"),
        "inspect": report.table(width),
    }
    for where, table in tables.items():
        lines = _rendered(table, width)
        shown = [line for line in lines if "a_layer_name" in line]
        assert len(shown) == 1, (where, lines)
        cell = shown[0].split("a_layer_name", 1)[1].split("│", 1)[0].strip()
        assert cell.endswith("…"), (where, shown)  # shortened, on one line
        assert not any("narrow_table" in line or "x50" in line for line in lines), (where, lines)
