"""Module docstrings say what a module is, in one to three lines (TorchGeo's style).

Architecture walk-throughs, design rationale and paper-fidelity notes belong in the model
and dataset pages of docs/, benchmark figures in benchmarks/*.md, and a class's or a
function's contract in its own docstring, where ``help()`` shows it.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / 'torchgeo_ext'
MODULES = sorted(PACKAGE.rglob('*.py'))
MAX_LINES = 3


def module_docstring(path: Path) -> str | None:
    """The module docstring of a source file, as ``help()`` shows it."""
    return ast.get_docstring(ast.parse(path.read_text(), filename=str(path)))


@pytest.mark.parametrize(
    'path', MODULES, ids=[str(p.relative_to(PACKAGE)) for p in MODULES]
)
def test_module_docstring_is_short(path: Path) -> None:
    doc = module_docstring(path)
    assert doc, f'{path.relative_to(PACKAGE.parent)}: no module docstring'
    lines = doc.splitlines()
    assert len(lines) <= MAX_LINES, (
        f'{path.relative_to(PACKAGE.parent)}: module docstring of {len(lines)} lines '
        f'(at most {MAX_LINES}): say what the module is; move walk-throughs to docs/, '
        'figures to benchmarks/, contracts to the class or function docstring'
    )


def test_the_check_sees_long_docstrings(tmp_path: Path) -> None:
    long = tmp_path / 'long.py'
    long.write_text('"""One.\n\nTwo.\nThree.\n"""\n')
    short = tmp_path / 'short.py'
    short.write_text('"""One line."""\n')
    missing = tmp_path / 'missing.py'
    missing.write_text('x = 1\n')
    doc = module_docstring(long)
    assert doc is not None
    assert len(doc.splitlines()) == 4
    assert module_docstring(short) == 'One line.'
    assert module_docstring(missing) is None
    assert len(MODULES) > 100  # the glob found the package
