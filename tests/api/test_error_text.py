"""Error messages say what was wrong in the caller's terms: no repr of the server's internal objects
(``<ast.Call object at 0x...>``), whatever a library put in its exception."""

from __future__ import annotations

import struct

import pytest

from app.errors import ApiError, error_json, plain_text

NPY = {"Content-Type": "application/x-npy"}


def npy_with_header(header: str) -> bytes:
    """A .npy file (version 1.0) whose header dictionary is ``header``, followed by some data."""
    text = header.encode()
    text += b" " * ((64 - (10 + len(text) + 1) % 64) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + b"\x00" * 64


@pytest.mark.parametrize("header", [
    "{'descr': foo(), 'fortran_order': False, 'shape': (2,), }",   # a call: <ast.Call object at 0x...>
    "{'descr': '<f4', 'fortran_order': False, 'shape': (1, n), }",  # a name: <ast.Name object at 0x...>
    "{'descr': '<f4', 'fortran_order': False, 'shape': (2,) + (3,), }",
])
def test_an_expression_in_a_npy_header_is_described_not_echoed(client, header):
    response = client.post("/api/models/tiny/predict", content=npy_with_header(header), headers=NPY)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "object at 0x" not in detail and "ast." not in detail
    assert "'shape': (1, 28, 28)" in detail and "numpy.save" in detail


def test_no_error_answer_carries_an_object_repr():
    """The last guard: whatever reaches error_json (every handler's answer) loses object reprs."""
    response = error_json(422, "cannot use <ast.BinOp object at 0x7f00deadbeef> here")
    assert b"object at 0x" not in response.body and b"an expression" in response.body
    assert plain_text(ValueError("malformed node or string: <ast.Call object at 0x7f12>")) == \
        "malformed node or string: an expression"
    assert plain_text(ValueError()) == "ValueError"
    assert ApiError(422, "x").detail == "x"
