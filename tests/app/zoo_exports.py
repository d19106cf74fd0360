"""Export the zoo's architectures in a background process while the rest of the suite runs.

A dynamo export is seconds of single-threaded Python (5-35 s each, about 4 minutes for the zoo), and the tests
before the zoo's (``tests/api``: requests through the app, mostly one thread) leave the second core idle. So, when
a session collects the zoo's tests, ``tests/conftest.py`` starts this module as a process at the lowest priority
(``nice 19``): it writes each ``(ONNX bytes, x, PyTorch's output)`` that ``torch_zoo.exported`` would compute, in
the order the tests ask for them, and ``torch_zoo.exported`` reads the file when it is there. A test never waits
for it: when a case is not written yet, the process is behind (a busy machine may starve it) and is stopped, and
the tests export the rest themselves. The files hold the bytes an in-process export gives: the same code
(``torch_zoo.export``), the same seeds, one torch thread.

    python -m tests.app.zoo_exports DIRECTORY NAME:EXPORTER ...
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

import numpy as np


def case_file(directory: Path, name: str, exporter: str, suffix: str) -> Path:
    """``<directory>/<name>--<exporter>.<suffix>``: ``npz`` (the export), ``skip`` or ``error`` (the reason)."""
    return directory / f"{name}--{exporter}.{suffix}"


def _write_atomically(path: Path, write) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as f:
        write(f)
    os.replace(temporary, path)  # a reader sees all of it or nothing


def export_case(directory: Path, name: str, exporter: str) -> None:
    """Write the case's ``.npz``; ``.skip`` where the exporter cannot run here (ImportError), ``.error`` with the
    traceback where the export fails otherwise (the test then exports it itself, and fails as it would)."""
    from tests.app.torch_zoo import compute_export

    try:
        found = compute_export(name, exporter)
    except (ImportError, ModuleNotFoundError) as error:
        reason = str(error).encode()
        _write_atomically(case_file(directory, name, exporter, "skip"), lambda f: f.write(reason))
        return
    except Exception:  # any failure is the test's to report, in its own process
        _write_atomically(case_file(directory, name, exporter, "error"),
                          lambda f: f.write(traceback.format_exc().encode()))
        return
    if found is None:
        return  # the architecture's library is absent: the test skips by itself
    data, x, expected = found
    _write_atomically(case_file(directory, name, exporter, "npz"),
                      lambda f: np.savez(f, onnx=np.frombuffer(data, dtype=np.uint8), x=x, expected=expected))


def main(argv: list[str]) -> None:
    import torch

    torch.set_num_threads(1)
    directory = Path(argv[0])
    for case in argv[1:]:
        name, _, exporter = case.partition(":")
        export_case(directory, name, exporter)


if __name__ == "__main__":
    main(sys.argv[1:])
