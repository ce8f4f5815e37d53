"""`keras-graft convert` and `keras-graft inspect` on hostile files (`hostile_keras2`).

Every run is a child with an address-space limit and a timeout, in a working
directory where `keras_hub`, `keras_cv`, `keras_nlp` and the `keras_graft_tools` package
are planted (each writes the marker when imported). Without
`--trust-file-code`, nothing a file holds may run: no marker, no file but
convert's own target, every process under 1.5 GB resident (TensorFlow
included), and an answer before the timeout. CI runs the commands' entry
point on many files in one child (`run_batch`) and a sample of the bombs;
`python tests/helpers/hostile_keras2.py --all` runs every forgery through the real
command, each in its own process.
"""

import json
import re
import sys

import pytest

import hostile_keras2 as forged

MEMORY_BUDGET_MB = forged.MEMORY_BUDGET_MB

# Forgeries keras-graft must refuse (exit status 2), and what the refusal says.
REFUSED = {
    "savedmodel_lambda_in_metadata": "is a Lambda in its own metadata but a ReLU in the model config",
    "savedmodel_second_root": "describes object 0 twice",
    "savedmodel_unlisted_lambda": "is not part of the model config that keras-graft reads",
    "savedmodel_cell_before_its_rnn": "is not part of the model config that keras-graft reads",
    "savedmodel_shared_object": "share number 7 with different configs",
    "keras_zip_hidden_initializer": "`kernel_initializer` = an object config ('Functional')",
    "h5_hidden_initializer": "`kernel_initializer` = an object config ('Functional')",
    "keras_zip_foreign_module": "names module 'os'",
    "keras_zip_registered_name": "is registered as 'keras_graft>TFOp'",
    "keras_hub_initializer_keras": "names module 'keras_hub.src.evil'",
    "keras_hub_initializer_h5": "keras_hub.src.evil",
    "keras3_keras_hub": "keras_hub.src.evil",
}
# Files that load, whose constants XLA and TFLite would fold into gigabytes:
# CI's sample (each miss restarts the check process: seconds apiece). The
# sweep has them all: range, fill, PNG and zlib bombs in each format.
BOMBS = ["stft_window_bomb_h5"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return forged.forgeries(tmp_path_factory.mktemp("hostile_keras2"))


@pytest.fixture(scope="module")
def mark(files):
    return forged.marker(files["savedmodel_lambda_in_metadata"].parent)


def assert_inert(result, expected_files=()):
    summary = {k: v for k, v in result.items() if k not in ("stdout", "runs")}
    assert result["outcome"] == "exited", summary
    assert not result["marker"], summary  # no payload ran, nothing planted was imported
    assert result["files_created"] == sorted(expected_files), summary
    assert result["peak_rss_mb"] <= MEMORY_BUDGET_MB, summary


def both_commands_on(names, files, mark) -> list:
    """`convert`, then `inspect`, on each forgery of `names`, in one batch child that
    must stay inert: (name, run) of each run."""
    commands = [["convert", files[name], f"{{cwd}}/out_{name}.keras"] for name in names]
    commands += [["inspect", files[name]] for name in names]
    result = forged.run_batch(commands, marker_path=mark)
    assert_inert(result)
    return list(zip([*names, *names], result["runs"]))


def test_forged_keras2_files_are_refused_by_both_commands_and_nothing_runs(files, mark):
    for name, run in both_commands_on(list(REFUSED), files, mark):
        assert run["status"] == 2, (name, run)
        assert REFUSED[name] in " ".join(run["stderr"].split()), (name, run["stderr"][-2000:])


@pytest.mark.parametrize(
    "command",
    [forged.launcher(), [sys.executable, "-m", "keras_graft_tools"]],
    ids=["keras-graft", "python -m keras_graft_tools"],
)
def test_nothing_is_imported_from_the_working_directory(files, mark, command):
    """A config naming `keras_hub` next to planted packages: Keras looks for it, and
    finds none (neither does the console script find the planted `keras_graft_tools`).
    (`convert` goes through the same launcher: `test_convert_...` below.)"""
    result = forged.run_command(["inspect", files["keras3_keras_hub"]], marker_path=mark, command=command)
    assert_inert(result)
    assert result["returncode"] == 2 and "keras_hub.src.evil" in result["stderr"], result["stderr"][-2000:]


def test_inspect_keeps_constant_folding_within_the_budget(files, mark):
    commands = [["inspect", files[name], "--json", "--require", "xla,tflite"] for name in BOMBS]
    result = forged.run_batch(commands, marker_path=mark)
    assert_inert(result)
    for run, name in zip(result["runs"], BOMBS):
        report = json.loads(run["stdout"])
        misses = [
            (layer["name"], check)
            for layer in report["layers"]
            for check in ("xla", "tflite")
            if layer["checks"][check]["status"] == "not checked (budget)"
        ]
        # The fold went over the budget; a budget miss never passes --require.
        assert misses, (name, report["layers"])
        assert run["status"] == 1, (name, run["stderr"][-2000:])
        assert "required check failed" in run["stderr"]


def test_convert_checks_within_its_budget_and_trusting_a_file_does_not_make_a_forged_one_run(files, mark):
    """A bomb's check is not made (budget), never passed; with `--trust-file-code`, the
    forged SavedModel is still refused before tf_keras reads it. (The real launcher,
    with `keras_hub` planted, refuses a config naming it.)"""
    result = forged.run_batch(
        [
            ["convert", files["stft_window_bomb_h5"], "{cwd}/out.keras"],
            ["convert", files["savedmodel_lambda_in_metadata"], "{cwd}/trusted.keras", "--trust-file-code"],
        ],
        marker_path=mark,
    )
    assert_inert(result, expected_files=["out.keras"])
    bomb, trusted = result["runs"]
    assert bomb["status"] == 1, bomb["stderr"][-2000:]
    output = " ".join(bomb["stdout"].split())
    assert "Check not made (budget)" in output and "Check passed" not in output
    assert trusted["status"] == 2
    assert REFUSED["savedmodel_lambda_in_metadata"] in " ".join(trusted["stderr"].split())
    launched = forged.run_command(["convert", files["keras3_keras_hub"], "{cwd}/out.keras"], marker_path=mark)
    assert_inert(launched)
    assert launched["returncode"] == 2 and "keras_hub.src.evil" in launched["stderr"]


def assert_printed_as_text(text, where, shown=True):
    """`text` holds none of the characters that would rewrite the terminal, and (when
    `shown`) shows the forged name: its escapes written out, its markup as text."""
    for character in forged.HIDDEN_CHARACTERS:
        assert character not in text, (where, repr(character), text[-3000:])
    if shown:
        assert r"\x1b[2K" in text and r"\u202e" in text and r"\n" in text, (where, text[-3000:])


# What rich itself writes to a terminal: colours, and its progress bar's
# cursor hiding, line erasing and carriage returns.
RICH_COLOURS = r"\x1b\[[0-9;]*m"
RICH_LIVE_DISPLAY = r"\x1b\[\?25[lh]|\x1b\[2K|\x1b\[1A|\r"


def test_names_from_a_file_print_as_text_in_every_command(files, mark, tmp_path):
    names, op_name = files["forged_names_h5"], files["forged_op_name_h5"]
    page = tmp_path / "page.html"
    colour_terminal = {"FORCE_COLOR": "1", "COLUMNS": "100"}  # 100 columns: the compact table
    commands = [
        ["inspect", names, "--require", "tflite"],  # the table, the required-check lines
        ["inspect", names, "--json", "--html", page],
        ["inspect", op_name],  # an error quoting the name
        ["convert", names, "{cwd}/out.keras", "--no-check"],  # the translation report
        ["convert", op_name, "{cwd}/refused.keras"],
        [colour_terminal, "inspect", names, "--require", "tflite"],
    ]
    result = forged.run_batch(commands, marker_path=mark)
    assert_inert(result, expected_files=["out.keras"])
    table, as_json, error, report, refused, coloured = result["runs"]
    for where, run in zip(
        ("table", "json", "inspect error", "convert report", "convert error"), result["runs"][:5]
    ):
        # (JSON escapes in its own way; the report's narrow column folds the name.)
        assert_printed_as_text(
            run["stdout"] + run["stderr"], where, shown=where not in ("json", "convert report")
        )
    # The required-check line: the whole name, its markup printed as text.
    assert "required check failed" in table["stderr"]
    # (Keras 3 refuses `/` in names: the Keras 2 name was renamed, `[/]` to `[_]`.)
    assert "[bold red]required[_]:white_check_mark:" in table["stderr"]
    layers = {layer["name"] for layer in json.loads(as_json["stdout"])["layers"]}
    assert forged.FORGED_NAME.replace("/", "_") in layers  # exactly, escaped by JSON itself
    assert error["status"] == 2 and refused["status"] == 2 and "Refusing op" in error["stderr"]
    assert report["status"] == 0 and "clip" in report["stdout"]
    assert_printed_as_text(page.read_text(encoding="utf-8"), "html")
    # On a colour terminal, the table's only escape sequences are rich's colours,
    # and the error output's rich's own.
    assert "reasons and keras.ops left out" in " ".join(coloured["stdout"].split())  # compact
    assert "\x1b[" in coloured["stdout"]  # coloured
    assert_printed_as_text(re.sub(RICH_COLOURS, "", coloured["stdout"]), "compact table", shown=False)
    errors = re.sub(RICH_LIVE_DISPLAY, "", re.sub(RICH_COLOURS, "", coloured["stderr"]))
    assert_printed_as_text(errors, "progress and required-check lines")


# HDF5 and zip forgeries (`_hostile.FILE_FORMAT_ATTACKS`) that CI runs through both
# commands: each is refused, naming the file, before anything reads it.
FILE_FORMAT_SAMPLE = [
    "h5_shape_bomb",
    "h5_optimizer_bomb",
    "h5_repeated_weight_names",
    "h5_external_link",
    "h5_external_storage",
    "h5_virtual_dataset",
    "h5_string_weights",
    "zip_path_traversal",
    "zip_metadata_bomb",
    "zip_weights_external_link",
]


def test_forged_hdf5_and_zip_files_are_refused_by_both_commands_before_they_are_read(files, mark):
    for name, run in both_commands_on(FILE_FORMAT_SAMPLE, files, mark):
        assert run["status"] == 2, (name, run["stderr"][-2000:])
        said = " ".join(run["stderr"].split())
        assert "was not written by Keras" in said and files[name].name in said, (name, said[-2000:])


def test_import_never_looks_in_the_working_directory(files, mark):
    """`--import my_ops` with a planted `my_ops.py` in the working directory (beside a
    downloaded model): the planted module is not imported; the command says where it looks."""
    import shutil

    for command in ("inspect", "convert"):
        with forged.tempfile.TemporaryDirectory(prefix="planted-") as folder:
            folder = forged.Path(folder)
            model = folder / "model.keras"
            shutil.copyfile(files["range_250m"], model)
            (folder / "my_ops.py").write_text(f"open({str(mark)!r}, 'a').write('my_ops\\n')\n")
            arguments = [command, model, *(["{cwd}/out.keras"] if command == "convert" else [])]
            result = forged.run_command([*arguments, "--import", "my_ops"], marker_path=mark, cwd=folder)
            assert not result["marker"], result["stderr"][-2000:]
            assert result["returncode"] == 2, result["stderr"][-2000:]
            assert "never in the working directory" in " ".join(result["stderr"].split())
