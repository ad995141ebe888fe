"""README's pair.yaml reference is generated from the spec model and kept current."""

from __future__ import annotations

import argparse
import io
import re
from contextlib import redirect_stdout

import pytest

from ddbbridge import docs
from ddbbridge.crd import spec_schema
from ddbbridge.spec import PairSpec, ReplicationSettings
from tests.pair_cases import REPOSITORY

README = REPOSITORY / "README.md"
UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")


def _between_markers(text: str) -> str:
    start = text.index(docs.START) + len(docs.START) + 1
    return text[start : text.index(docs.END)]


def test_readme_reference_is_current() -> None:
    committed = _between_markers(README.read_text(encoding="utf-8"))
    assert committed == docs.render_reference(), "README is stale: run `ddbbridge docs --write`"


def test_every_field_has_a_well_formed_row() -> None:
    table = [line for line in docs.render_reference().splitlines() if line.startswith("| `spec.")]
    rows = {line.split("`")[1]: line for line in table}
    for line in table:
        # 5 cells: 6 unescaped pipes, whatever the patterns and enums contain.
        assert len(UNESCAPED_PIPE.findall(line)) == 6, line
    for name, field in PairSpec.model_fields.items():
        assert f"spec.{field.alias or name}" in rows
    for name, field in ReplicationSettings.model_fields.items():
        path = f"spec.replication.{field.alias or name}"
        default = field.get_default(call_default_factory=True)
        if default is not None:
            assert f"`{getattr(default, 'value', default)}`".lower() in rows[path].lower(), path
    assert len(rows) == sum(1 for _ in docs._rows(spec_schema(), "spec"))
    assert "Immutable." in rows["spec.replication.timestampUnit"]
    assert "1..10000" in rows["spec.replication.senderBatchSize"]


def test_markers_are_required_and_text_around_them_kept() -> None:
    with pytest.raises(docs.StaleMarkersError):
        docs.replace_between_markers("# no markers\n", "x\n")
    text = f"before\n{docs.START}\nold\n{docs.END}\nafter\n"
    assert docs.replace_between_markers(text, "new\n") == f"before\n{docs.START}\nnew\n{docs.END}\nafter\n"


def test_cli_prints_the_reference() -> None:
    parser = argparse.ArgumentParser()
    docs.register(parser.add_subparsers())
    args = parser.parse_args(["docs"])
    out = io.StringIO()
    with redirect_stdout(out):
        assert args.handler(args) == 0
    assert out.getvalue() == docs.render_reference()
