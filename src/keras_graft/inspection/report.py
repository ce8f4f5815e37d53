"""What `keras_graft.inspect` found: per-layer results, the summary, the
`--require` verdict, and the table and JSON forms.

Names, op names and reasons come from the model file: the table shows them
through `keras_graft.terminal.escape` (no markup, no control characters).

>>> r = LayerReport("clip", "tf.clip_by_value", "TFOp", ["ClipByValue"], [], [],
...                 {"xla": Verdict("yes")}, "keras.ops.clip")
>>> r.passes("xla")
True
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from rich.console import Console
from rich.table import Table

from keras_graft.inspection.checks import BUDGET, NOT_CHECKED, Verdict
from keras_graft.terminal import NAME_COLUMN, escape

#: Every check, in report order, and the statuses that pass it in `--require`
#: (a check not made, "not checked (budget)", passes none).
PASSING = {
    "xla": ("yes",),
    "tflite": ("builtin",),
    "gradient": ("yes", "n/a"),
    "jax": ("xla", "callback"),
    "torch": ("yes",),
    "safe": ("yes",),
}
CHECKS = tuple(PASSING)

# Table colours per status.
_STYLES = {
    "yes": "green",
    "builtin": "green",
    "xla": "green",
    "n/a": "dim",
    "select": "yellow",
    "callback": "yellow",
    "allow": "yellow",
    "no": "red",
    BUDGET: "magenta",
    NOT_CHECKED: "magenta",
}


@dataclass
class LayerReport:
    """One op layer: its op, graph op types, tensors and check verdicts."""

    name: str
    op: str  # `tf.math.top_k`, or `package>name` for registered functions and layers
    kind: str  # TFOp, Op, or the @keras_graft.layer class name
    op_types: list
    inputs: list  # [{"shape": [...], "dtype": ...}]
    outputs: list
    checks: dict  # check name -> Verdict
    keras_ops: str | None = None

    def passes(self, check: str) -> bool:
        verdict = self.checks.get(check)
        return verdict is not None and verdict.status in PASSING[check]


@dataclass
class Report:
    """The inspection of one model."""

    model: str
    layers: list = field(default_factory=list)
    source: str | None = None
    # A Keras 2 file: its kind, and what loading it translated (`keras-graft convert`).
    keras2: dict | None = None

    def failures(self, required) -> list[str]:
        """'layer: check (why)' for each required check a layer does not pass."""
        return [
            f"{layer.name}: {check} ({layer.checks[check].status}"
            + (f", {layer.checks[check].detail})" if layer.checks[check].detail else ")")
            for layer in self.layers
            for check in required
            if check in layer.checks and not layer.passes(check)
        ]

    def summary(self) -> dict:
        """How many op layers pass each check, and the statuses counted."""
        counts = {"layers": len(self.layers)}
        for check in CHECKS:
            statuses: dict = {}
            for layer in self.layers:
                if check in layer.checks:
                    status = layer.checks[check].status
                    statuses[status] = statuses.get(status, 0) + 1
            if statuses:
                counts[check] = statuses
        return counts

    def summary_line(self) -> str:
        """`3 op layers: 2 XLA-ready, 1 TFLite-builtin (1 with Select TF ops), ...`."""
        counts = self.summary()

        def n(check, *statuses):
            return sum(counts.get(check, {}).get(s, 0) for s in statuses)

        parts = []
        if "xla" in counts:
            parts.append(f"{n('xla', 'yes')} XLA-ready")
        if "tflite" in counts:
            extra = [f"{n('tflite', 'select')} with Select TF ops"] if n("tflite", "select") else []
            extra += [f"{n('tflite', 'no')} cannot convert"] if n("tflite", "no") else []
            parts.append(
                f"{n('tflite', 'builtin')} TFLite-builtin" + (f" ({', '.join(extra)})" if extra else "")
            )
        if "gradient" in counts:
            parts.append(f"{n('gradient', 'yes', 'n/a')} differentiable")
        if "jax" in counts:
            parts.append(
                f"{n('jax', 'xla')} compile into JAX ({n('jax', 'callback')} callback, "
                f"{n('jax', 'no')} cannot run)"
            )
        if "torch" in counts:
            parts.append(f"{n('torch', 'yes')} run on torch")
        if "safe" in counts:
            parts.append(f"{n('safe', 'yes')} load in safe mode")
        over_budget = sum(n(check, BUDGET) for check in CHECKS)
        not_made = sum(n(check, NOT_CHECKED) for check in CHECKS)
        if over_budget:
            parts.append(f"{over_budget} checks not checked (budget)")
        if not_made:
            parts.append(f"{not_made} checks not made")
        return f"{len(self.layers)} op layers: " + ", ".join(parts)

    def to_dict(self) -> dict:
        """Everything found, as plain JSON data (what `to_json` writes)."""
        layers = []
        for layer in self.layers:
            data = asdict(layer)
            data["checks"] = {k: {"status": v.status, "detail": v.detail} for k, v in layer.checks.items()}
            layers.append(data)
        return {
            "model": self.model,
            "source": self.source,
            "summary": self.summary(),
            "summary_line": self.summary_line(),
            "layers": layers,
            "keras2": self.keras2,
        }

    def to_json(self, indent: int | None = 2) -> str:
        """Everything found, as a JSON document (`keras-graft inspect --json`)."""
        return json.dumps(self.to_dict(), indent=indent)

    def print(self, console: Console) -> None:
        """The table, after what loading a Keras 2 file translated, if it was one."""
        if self.keras2 is not None:
            translations = self.keras2["translations"]
            console.print(
                f"{escape(self.source)} is a Keras 2 file ({self.keras2['kind']}); "
                f"`keras-graft convert` translates {len(translations)} config(s) "
                "and the converted model deploys as below."
            )
            if translations:
                table = Table(title="what `keras-graft convert` would translate")
                for column in ("Layer", "Keras 2 class"):
                    table.add_column(column, **NAME_COLUMN)
                table.add_column("Translation")
                for note in translations:
                    table.add_row(escape(note["layer"]), escape(note["keras2_class"]), escape(note["change"]))
                console.print(table)
        console.print(self.table(console.width))

    def table(self, width: int | None = None) -> Table:
        """The people's view: one row per op layer, one column per check.

        Narrower than `WIDE_TABLE` columns, the reasons behind verdicts, the
        graph ops and the `keras.ops` equivalents are left out, so that every
        check stays readable.
        """
        compact = width is not None and width < WIDE_TABLE
        caption = self.summary_line()
        if compact:
            caption += " (reasons and keras.ops left out at this width: widen the terminal, or use --json)"
        table = Table(title=f"keras-graft inspect: {escape(self.model)}", caption=caption)
        table.add_column(
            "layer: op" if compact else "layer: op → graph ops",
            min_width=20 if compact else 24,
            max_width=32,
            # A name (no spaces) is shortened, never wrapped mid-word; the
            # line of graph ops below it wraps between them.
            overflow="ellipsis",
        )
        table.add_column("output", min_width=10, max_width=20)
        for column in CHECKS if compact else (*CHECKS, "keras.ops"):
            table.add_column(column, min_width=len(column), max_width=16, overflow="fold")
        for layer in self.layers:
            op = "" if layer.op == layer.name else f"\n{escape(layer.op)}"
            cells = [_cell(layer.checks.get(check), detail=not compact) for check in CHECKS]
            if not compact:
                op += f"\n[dim]→ {escape(_first(layer.op_types, _SHOWN_OP_TYPES))}[/]"
                cells.append(layer.keras_ops or "")
            table.add_row(
                f"{escape(layer.name)}{op}",
                "\n".join(escape(f"{tuple(o['shape'])} {o['dtype']}") for o in layer.outputs),
                *cells,
            )
        return table


# Consoles narrower than this get the compact table.
WIDE_TABLE = 170

# Graph op types a table row names; `--json` has them all.
_SHOWN_OP_TYPES = 4


def _first(names: list, count: int) -> str:
    shown = ", ".join(names[:count])
    return f"{shown} +{len(names) - count} more" if len(names) > count else shown


def _cell(verdict: Verdict | None, detail: bool = True) -> str:
    if verdict is None:
        return "[dim]-[/]"
    style = _STYLES.get(verdict.status, "")
    text = f"[{style}]{escape(verdict.status)}[/]" if style else escape(verdict.status)
    return f"{text}\n[dim]{escape(verdict.detail)}[/]" if detail and verdict.detail else text
