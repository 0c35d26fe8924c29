"""The demos' output folder: new, empty or made by an earlier demo, never the user's files."""

from __future__ import annotations

import os
from pathlib import Path

#: File a demo leaves in its output folder: a later demo may replace the files there.
MARKER = '.torchgeo-ext-demo'


def demo_output_dir(path: str | os.PathLike[str]) -> Path:
    """Create (or reuse) a demo's output folder, refusing a folder of the user's.

    A demo writes fixed names (``scene.tif``, ``methods.csv``, ...), so it only
    writes into a folder that is new, empty, or marked by an earlier demo.

    Args:
        path: The folder.

    Returns:
        The folder, marked as the demo's.

    Raises:
        InvalidInputError: If it is a non-empty folder the demo did not make.
    """
    from ..errors import InvalidInputError
    from ..export.atomic import atomic_output, make_output_dir

    folder = Path(path)
    if folder.is_dir() and any(folder.iterdir()) and not (folder / MARKER).is_file():
        raise InvalidInputError(
            folder,
            'is a non-empty folder that no demo made: the demo would replace files '
            'in it; give a new or empty folder with --output',
        )
    out = make_output_dir(folder)
    if not (out / MARKER).is_file():
        with atomic_output(out / MARKER) as tmp:
            Path(tmp).write_text('made by torchgeo-ext demo: its files are replaced\n')
    return out
