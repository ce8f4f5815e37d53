"""The Keras 2 op-layer sweep in CI: a fixed sample of ops, and Python's operators.

`keras2_op_sweep.py` builds each call with tf_keras in a child process, in
every form its signature allows, saves it as `.h5`, and loads it here in
Keras 3: files Keras 2 saved faithfully load and compute what tf_keras
computed (eagerly and with `predict_on_batch`); files Keras 2 saved without
part of the call are refused, naming the layer, the op, what Keras 2 dropped
and that the weights still load. Every allowed op:
`python tests/helpers/keras2_op_sweep.py --all`.
"""

import pytest

import keras2_op_sweep as sweep
from keras_graft.core import op_names
from keras_graft.keras2 import tf1_names
from keras_graft.patches import operators


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return sweep.run(sweep.CI_SAMPLE, tmp_path_factory.mktemp("op_sweep"), operators=True)


def by_op(cases):
    found = {}
    for case in cases:
        found.setdefault(case["op"], {})[case["form"]] = case
    return found


def test_every_case_behaves_as_its_class_requires(cases):
    problems = [f"{c['op']} [{c['form']}] {c['call']}: {c['problem']}" for c in cases if c["problem"]]
    assert problems == []


def test_the_sample_reaches_every_form_of_call_and_every_op(cases):
    assert {c["form"] for c in cases} >= {
        "positional",
        "keywords",
        "all keywords",
        "constant",
        "constant first",
        "list of tensors",
        "*args",
    }
    recorded = {c["op"] for c in cases if c["class"] != sweep.NOT_RECORDABLE}
    assert recorded >= set(sweep.CI_SAMPLE)
    assert sum(c["class"] == sweep.FAITHFUL for c in cases) > 100


def test_the_known_hard_signatures_get_the_class_keras2_gave_them(cases):
    ops = by_op(cases)
    assert {c["class"] for c in ops["einsum"].values()} == {sweep.LOSSY}
    assert ops["meshgrid"]["positional"]["class"] == sweep.FAITHFUL
    assert ops["meshgrid"]["*args"]["class"] == sweep.LOSSY
    assert {c["class"] for c in ops["operator.eq"].values()} == {sweep.LOSSY}  # `other` dropped
    assert ops["concat"]["list of tensors"]["class"] == sweep.FAITHFUL
    assert ops["linalg.matmul"]["constant"]["class"] == sweep.FAITHFUL
    assert ops["operator.add"]["reflected"]["class"] == sweep.FAITHFUL
    # Keras 2 cannot reload its own `tf.size` file; keras-graft loads it and matches.
    assert ops["size"]["positional"]["class"] == sweep.UNRELOADABLE
    assert ops["size"]["positional"]["keras3"] == "loads and matches"
    # Recorded as the TF 1 `compat.v1.nn.convolution`, which no TF 2 op hands its call to.
    assert ops["nn.atrous_conv2d"]["positional"]["keras3"] == "refused: no TF 2 op to load it as"


def test_tf1_names_keras2_recorded_are_in_the_sample(cases):
    recorded = {name for c in cases for _, name in c.get("op_layers", [])}
    assert {
        "compat.v1.floor_div",
        "compat.v1.shape",
        "compat.v1.gather",
        "compat.v1.boolean_mask",
    } <= recorded
    unmapped = {name for name in recorded if tf1_names.tf2_name(name).startswith("compat.v1.")}
    assert unmapped == {"compat.v1.nn.convolution"}  # `tf.nn.atrous_conv2d`'s, which stays refused


OPERATOR_NAMES = {"and_": "and", "or_": "or"}


def test_operators_on_op_outputs_use_the_ops_keras2_recorded(cases):
    """`keras_graft.patches.operators` maps each operator to what Keras 2 stored for it."""
    tables = {
        **operators.OPERATORS,
        **{k: (v, v) for k, v in operators.COMPARISONS.items()},
        **operators.UNARY,
    }
    checked = 0
    for case in cases:
        name = case["op"].removeprefix("operator.")
        name = OPERATOR_NAMES.get(name, name)
        # Keras 2 recorded a composite op as the ops inside (`^` on booleans as
        # logical and/or/not); keras-graft's one op computes the same (the sweep checks).
        if name not in tables or case["class"] != sweep.FAITHFUL or len(case["op_layers"]) != 1:
            continue
        on_bools, otherwise = tables[name]
        expected = on_bools if case["form"] == "bools" else otherwise
        recorded = tf1_names.tf2_name(case["op_layers"][0][1])
        assert op_names.name_of(expected) == f"tf.{recorded}", case
        checked += 1
    assert checked >= 40
