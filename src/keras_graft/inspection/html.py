"""`keras-graft inspect MODEL --html report.html`: the model's graph, each op
layer coloured by what it passes, in one self-contained page (inline SVG and
CSS, nothing fetched). Text from the model file is HTML-escaped, with its
control and format characters (bidi overrides...) written out visibly.

>>> graph = {"nodes": [{"name": "x", "kind": "InputLayer"}], "edges": []}
>>> "<svg" in page(Report(model="m"), graph)
True
"""

from __future__ import annotations

import html

from keras_graft import _compat
from keras_graft.inspection.checks import BUDGET, NOT_CHECKED
from keras_graft.inspection.report import CHECKS, Report
from keras_graft.terminal import visible

_BOX_WIDTH, _BOX_HEIGHT, _COLUMN, _ROW = 210, 46, 240, 78

# The fill of an op layer: every check passes; some pass with a condition
# (Select TF ops, the JAX callback, an allow); some were not made (budget);
# some fail.
_COLOURS = {
    "pass": "#cdebd3",
    "conditional": "#fbecc0",
    "unchecked": "#e4d9f2",
    "fail": "#f6c9c9",
    "other": "#eceff3",
}
_CONDITIONAL = {"select", "callback", "allow", "n/a"}
_UNCHECKED = {BUDGET, NOT_CHECKED}


def _text(value) -> str:
    """`value` (from the model file) as HTML text or attribute value."""
    return html.escape(visible(value), quote=True)


def model_graph(model) -> dict:
    """The model's layers and Keras' own ops (`x + y`), the edges between them,
    and, per model output, the node that produces it; nested models as one node."""
    nodes = [{"name": op.name, "kind": type(op).__name__} for op in _compat.model_operations(model)]
    outputs = [_compat.producing_operation(tensor)[0] for tensor in getattr(model, "outputs", None) or ()]
    return {
        "nodes": nodes,
        "edges": _compat.layer_edges(model),
        "outputs": [op.name for op in outputs if op is not None],
    }


def verdict_class(layer_report) -> str:
    statuses = {verdict.status for verdict in layer_report.checks.values()}
    if all(layer_report.passes(check) for check in layer_report.checks):
        return "conditional" if statuses & _CONDITIONAL - {"n/a"} else "pass"
    failing = {layer_report.checks[c].status for c in layer_report.checks if not layer_report.passes(c)}
    if failing <= _CONDITIONAL:
        return "conditional"
    return "unchecked" if failing <= _CONDITIONAL | _UNCHECKED else "fail"


def _layout(graph: dict) -> dict:
    """(x, y) per node: rows by longest path from the inputs, side by side within a row."""
    depth = {node["name"]: 0 for node in graph["nodes"]}
    for _ in graph["nodes"]:  # longest-path relaxation over a DAG
        for source, target in graph["edges"]:
            if source in depth and target in depth:
                depth[target] = max(depth[target], depth[source] + 1)
    rows: dict = {}
    positions = {}
    for node in graph["nodes"]:
        row = depth[node["name"]]
        positions[node["name"]] = (20 + rows.get(row, 0) * _COLUMN, 20 + row * _ROW)
        rows[row] = rows.get(row, 0) + 1
    return positions


def _svg(graph: dict, by_layer: dict) -> str:
    positions = _layout(graph)
    width = max((x for x, _ in positions.values()), default=0) + _BOX_WIDTH + 40
    height = max((y for _, y in positions.values()), default=0) + _BOX_HEIGHT + 40
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">',
        '<defs><marker id="arrow" markerWidth="8" markerHeight="8" refX="7" refY="4" '
        'orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#667"/></marker></defs>',
    ]
    for source, target in graph["edges"]:
        if source in positions and target in positions:
            (x1, y1), (x2, y2) = positions[source], positions[target]
            parts.append(
                f'<line x1="{x1 + _BOX_WIDTH / 2}" y1="{y1 + _BOX_HEIGHT}" x2="{x2 + _BOX_WIDTH / 2}" '
                f'y2="{y2}" stroke="#667" marker-end="url(#arrow)"/>'
            )
    outputs = graph.get("outputs", [])
    for node in graph["nodes"]:
        x, y = positions[node["name"]]
        layer = by_layer.get(node["name"])
        state = verdict_class(layer) if layer else "other"
        label = _text(node["name"])
        detail = _text(layer.op if layer else node["kind"])
        produced = [str(i) for i, name in enumerate(outputs) if name == node["name"]]
        classes = f"layer {state} output" if produced else f"layer {state}"
        indices = f' data-outputs="{" ".join(produced)}"' if produced else ""
        parts.append(
            f'<g class="{classes}" data-layer="{label}"{indices}><rect x="{x}" y="{y}" rx="6" '
            f'width="{_BOX_WIDTH}" height="{_BOX_HEIGHT}" fill="{_COLOURS[state]}" stroke="#556" '
            f'stroke-width="{3 if produced else 1}"/>'
            f'<text x="{x + 10}" y="{y + 19}" font-weight="bold">{label}</text>'
            f'<text x="{x + 10}" y="{y + 36}" fill="#445">{detail}</text>{_output_mark(x, y, produced)}</g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _output_mark(x: int, y: int, produced: list[str]) -> str:
    """The mark under a node that produces model outputs (their indices)."""
    if not produced:
        return ""
    plural = "s" if len(produced) > 1 else ""
    return (
        f'<text x="{x + 10}" y="{y + _BOX_HEIGHT + 14}" font-weight="bold">'
        f"→ model output{plural} {', '.join(produced)}</text>"
    )


def _table(report: Report) -> str:
    head = "".join(f"<th>{check}</th>" for check in CHECKS)
    rows = []
    for layer in report.layers:
        cells = []
        for check in CHECKS:
            verdict = layer.checks.get(check)
            if verdict is None:
                cells.append("<td></td>")
                continue
            state = (
                "pass"
                if layer.passes(check)
                else (
                    "conditional"
                    if verdict.status in _CONDITIONAL
                    else "unchecked"
                    if verdict.status in _UNCHECKED
                    else "fail"
                )
            )
            title = _text(verdict.detail or "")
            cells.append(f'<td class="{state}" title="{title}">{_text(verdict.status)}</td>')
        rows.append(
            f"<tr><td>{_text(layer.name)}</td><td><code>{_text(layer.op)}</code></td>{''.join(cells)}</tr>"
        )
    return f"<table><tr><th>layer</th><th>op</th>{head}</tr>{''.join(rows)}</table>"


def page(report: Report, graph: dict) -> str:
    """The whole report page."""
    by_layer = {layer.name: layer for layer in report.layers}
    title = _text(f"keras-graft inspect: {report.model}")
    summary = _text(report.summary_line()) if report.layers else "no op layers"
    style = (
        "body{font-family:sans-serif;margin:24px;color:#223} svg text{font-size:12px}"
        "table{border-collapse:collapse;margin-top:16px} td,th{border:1px solid #ccd;"
        "padding:4px 8px;font-size:13px}"
        + "".join(f".{name}{{background:{colour}}}" for name, colour in _COLOURS.items())
        + ".legend span{display:inline-block;padding:2px 8px;margin-right:8px}"
    )
    legend = (
        '<p class="legend"><span class="pass">every check passes</span>'
        '<span class="conditional">passes with a condition (Select TF ops, JAX callback, '
        'an allow)</span><span class="unchecked">a check not made (budget)</span>'
        '<span class="fail">fails a check</span>'
        '<span class="other">other layers and Keras ops</span>'
        "<span><b>→ model output</b>: a node whose result the model returns (bold border)</span></p>"
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{style}</style></head><body><h1>{title}</h1><p>{summary}</p>{legend}"
        f"{_svg(graph, by_layer)}{_table(report)}</body></html>"
    )
