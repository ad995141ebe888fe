"""The `pair.yaml` field reference in README.md, rendered from the CRD schema the spec model generates.

README.md holds the table between two markers; `ddbbridge docs --write` rewrites what lies between
them and a unit test fails when the committed README is stale.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ddbbridge.crd import spec_schema

START = "<!-- pair-reference:start -->"
END = "<!-- pair-reference:end -->"
README = Path("README.md")

Schema = dict[str, Any]


class StaleMarkersError(ValueError):
    """README.md lacks the reference markers, or has them out of order."""


def _cell(text: str) -> str:
    # Pipes end a table cell even inside code spans, so escape them everywhere.
    return text.replace("|", "\\|").replace("\n", " ")


def _code(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return f"`{text}`"


def _type(node: Schema) -> str:
    if "enum" in node:
        return " | ".join(_code(value) for value in node["enum"])
    if node["type"] == "array":
        return f"list of {_type(node['items'])}"
    return str(node["type"])


def _range(low: Any, high: Any, unit: str = "") -> str:
    if low is not None and high is not None:
        text = f"{low}" if low == high else f"{low}..{high}"
    elif high is not None:
        text = f"<= {high}"
    else:
        text = f">= {low}"
    return f"{text} {unit}".strip()


def _bounds(node: Schema) -> str:
    parts = []
    if "minimum" in node or "maximum" in node:
        parts.append(_range(node.get("minimum"), node.get("maximum")))
    if "minItems" in node or "maxItems" in node:
        parts.append(_range(node.get("minItems"), node.get("maxItems"), "items"))
    if "minLength" in node or "maxLength" in node:
        parts.append(_range(node.get("minLength"), node.get("maxLength"), "chars"))
    if "pattern" in node:
        parts.append(_code(node["pattern"]))
    return "; ".join(parts)


def _default(node: Schema, required: bool) -> str:
    if required:
        return "required"
    if node["type"] == "object" and "default" in node:
        return "each field's default"
    if "default" in node:
        return _code(node["default"])
    return ""


IMMUTABLE_RULE = "self == oldSelf"


def _rules(node: Schema) -> list[Schema]:
    rules: list[Schema] = node.get("x-kubernetes-validations", [])
    return rules


def _rows(node: Schema, path: str) -> Iterator[tuple[str, Schema, bool]]:
    required = set(node.get("required", []))
    for name, child in node.get("properties", {}).items():
        child_path = f"{path}.{name}"
        yield child_path, child, name in required
        if child["type"] == "object":
            yield from _rows(child, child_path)
        elif child["type"] == "array" and child["items"]["type"] == "object":
            yield from _rows(child["items"], f"{child_path}[]")


def render_reference() -> str:
    """The markdown table of every spec field, then the cross-field rules checked at admission."""
    lines = [
        "| field | type | default | bounds | description |",
        "| --- | --- | --- | --- | --- |",
    ]
    rules: list[tuple[str, str]] = []
    for path, node, required in _rows(spec_schema(), "spec"):
        description = node.get("description", "")
        for rule in _rules(node):
            if rule["rule"] == IMMUTABLE_RULE:
                description = f"{description} Immutable.".strip()
            elif "oldSelf" not in rule["rule"]:  # other transition rules: the closing bullet
                rules.append((path + rule.get("fieldPath", ""), rule["message"]))
        cells = [_code(path), _type(node), _default(node, required), _bounds(node), description]
        lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    lines.append("")
    lines.append("Rules the API server checks at admission (the CLI checks the same ones):")
    lines.append("")
    lines.extend(f"- {_code(path)}: {message}" for path, message in rules)
    lines.append(
        "- a side's `name`, `region` and `tableName`, and the `replication` stamp fields, cannot "
        "change after creation: that would orphan AWS resources or reorder stored versions."
    )
    return "\n".join(lines) + "\n"


def replace_between_markers(text: str, body: str) -> str:
    start = text.find(START)
    end = text.find(END)
    if start < 0 or end < start:
        raise StaleMarkersError(f"README.md needs {START} ... {END}")
    return text[: start + len(START)] + "\n" + body + text[end:]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("docs", help="print the pair.yaml field reference (markdown)")
    parser.add_argument(
        "--write", action="store_true", help="rewrite it in README.md (in the current folder)"
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    body = render_reference()
    if not args.write:
        sys.stdout.write(body)
        return 0
    text = README.read_text(encoding="utf-8")
    README.write_text(replace_between_markers(text, body), encoding="utf-8")
    print(f"wrote the pair.yaml reference into {README}", file=sys.stderr)
    return 0
