"""docs/ops.md lists every registered op with exactly its attributes, defaults and number of inputs."""

from __future__ import annotations

import json
import re
from fractions import Fraction
from pathlib import Path

import pytest

from engine.ops.base import OP_REGISTRY, REQUIRED

DOC = Path(__file__).resolve().parents[2] / "docs" / "ops.md"


def table_rows() -> dict[str, list[str]]:
    """op name -> the cells of its row in the main table."""
    lines = DOC.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| op | inputs | attributes |"))
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = cells
    return rows


def parse_value(text: str):
    if re.fullmatch(r"-?\d+/\d+", text):
        return float(Fraction(text))
    return json.loads(text)


def test_every_registered_op_is_documented_once():
    assert sorted(table_rows()) == sorted(OP_REGISTRY)


@pytest.mark.parametrize("name", sorted(OP_REGISTRY))
def test_attributes_and_defaults_match_the_code(name):
    cells = table_rows()[name]
    documented = {}
    for token in re.findall(r"`([^`]+)`", cells[2]):
        key, _, value = token.partition("=")
        documented[key] = parse_value(value) if value else REQUIRED
    defaults = OP_REGISTRY[name].defaults
    assert set(documented) == set(defaults), f"{name}: documented {sorted(documented)}, code {sorted(defaults)}"
    for key, value in defaults.items():
        if value is REQUIRED:
            assert documented[key] is REQUIRED, f"{name}.{key} is required in the code"
        else:
            same = documented[key] == value and type(documented[key]) is type(value)  # true is not 1
            assert same, f"{name}.{key}: documented {documented[key]!r}, code {value!r}"


@pytest.mark.parametrize("name", sorted(OP_REGISTRY))
def test_number_of_inputs_matches_the_code(name):
    inputs = table_rows()[name][1]
    arity = OP_REGISTRY[name].arity
    if arity is None:
        assert "or more" in inputs, f"{name} takes any number of inputs: {inputs!r}"
    else:
        assert inputs.startswith(str(arity)), f"{name} takes {arity} input(s): {inputs!r}"
