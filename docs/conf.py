"""Sphinx configuration of the torchgeo-ext documentation site (``make docs``).

The build needs no network: the tutorials use generated data only, and intersphinx
inventories are fetched only when ``TORCHGEO_EXT_DOCS_ONLINE=1`` is set (see
``docs/contributing.md``). Without it, references to TorchGeo, PyTorch, rasterio, GeoPandas
and xarray objects stay plain text instead of links.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent

project = 'torchgeo-ext'
author = 'torchgeo-ext developers'
copyright = '2026, torchgeo-ext developers'
release = importlib.import_module('torchgeo_ext').__version__

extensions = [
    'myst_nb',
    'sphinx.ext.autodoc',
    'sphinx.ext.autosummary',
    'sphinx.ext.intersphinx',
    'sphinx.ext.napoleon',
    'sphinx.ext.viewcode',
]

exclude_patterns = [
    '_build',
    'api/generated/.doctrees',
    '**.ipynb_checkpoints',
    'README.md',
]

html_theme = 'pydata_sphinx_theme'
html_title = 'torchgeo-ext'
html_static_path = ['_static']
html_theme_options = {
    'navigation_with_keys': False,
    'show_toc_level': 2,
    'navbar_align': 'left',
}

# Markdown pages and notebooks (MyST). Pages written for GitHub keep working there: headings
# get anchors, and the links that leave docs/ are rewritten below.
myst_enable_extensions = ['colon_fence', 'dollarmath']
myst_heading_anchors = 3
suppress_warnings = [
    # Pages start at level 1 and some jump to level 3 in tables of contents; harmless.
    'myst.header'
]

# Notebooks run at every build (they take seconds to a minute each on 2 cores and use
# generated data only); a failing cell fails the build.
nb_execution_mode = 'force'
nb_execution_timeout = 600
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True

# API reference: autosummary writes one page per public name into api/generated/.
autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {'members': True, 'show-inheritance': True}
autodoc_member_order = 'bysource'
autodoc_typehints = 'description'
autodoc_typehints_description_target = 'documented_params'
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
# Types that are not in this site's inventory would make `nitpicky` fail offline.
nitpicky = False

# Intersphinx needs each project's objects.inv from the web, and no installed package ships
# one: link only when asked to (and when the network is there).
intersphinx_mapping: dict[str, tuple[str, str | None]] = {}
if os.environ.get('TORCHGEO_EXT_DOCS_ONLINE') == '1':
    intersphinx_mapping = {
        'python': ('https://docs.python.org/3', None),
        'torchgeo': ('https://torchgeo.readthedocs.io/en/stable/', None),
        'torch': ('https://docs.pytorch.org/docs/stable/', None),
        'rasterio': ('https://rasterio.readthedocs.io/en/stable/', None),
        'geopandas': ('https://geopandas.org/en/stable/', None),
        'xarray': ('https://docs.xarray.dev/en/stable/', None),
        'lightning': ('https://lightning.ai/docs/pytorch/stable/', None),
    }

# The packages of the API reference, in the order of the import layers.
API_PACKAGES = {
    'datasets': 'Datasets',
    'datamodules': 'Data modules',
    'samplers': 'Samplers',
    'models': 'Models',
    'losses': 'Losses',
    'trainers': 'Trainers',
    'pipelines': 'Pipelines',
    'federated': 'Federated training (Flower)',
    'export': 'Export',
    'metrics': 'Metrics',
}


def public_names(package: str) -> list[str]:
    """The public names of a ``torchgeo_ext`` subpackage (its ``__all__``)."""
    module = importlib.import_module(f'torchgeo_ext.{package}')
    return sorted(module.__all__)


def write_api_pages() -> None:
    """Write docs/api/<package>.rst listing every public name (they are not committed).

    Generated from each package's ``__all__`` so that a new public name appears in the
    reference without editing the docs.
    """
    api = DOCS / 'api'
    for package, title in API_PACKAGES.items():
        names = public_names(package)
        lines = [
            f'{title}',
            '=' * len(title),
            '',
            f'.. automodule:: torchgeo_ext.{package}',
            '   :no-members:',
            '',
            f'.. currentmodule:: torchgeo_ext.{package}',
            '',
            '.. autosummary::',
            '   :toctree: generated',
            '   :nosignatures:',
            '',
            *(f'   {name}' for name in names),
            '',
        ]
        write_if_changed(api / f'{package}.rst', '\n'.join(lines))


def copy_benchmark_pages() -> None:
    """Copy benchmarks/*.md and their images into docs/benchmarks/ (not committed)."""
    target = DOCS / 'benchmarks'
    target.mkdir(exist_ok=True)
    for path in sorted((ROOT / 'benchmarks').iterdir()):
        if path.suffix in {'.md', '.png', '.svg'}:
            if path.suffix == '.md':
                write_if_changed(target / path.name, path.read_text())
            elif not (target / path.name).exists() or (
                (target / path.name).read_bytes() != path.read_bytes()
            ):
                shutil.copyfile(path, target / path.name)


def write_if_changed(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` unless it already holds it (keeps rebuilds incremental)."""
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


# Links written for GitHub that leave docs/: the benchmark pages are copied to
# docs/benchmarks/, and the README lives on GitHub only.
_LINK_REWRITES = [
    (
        re.compile(r'\]\((\.\./)+benchmarks/'),
        lambda m: '](' + '../' * (m.group(0).count('../') - 1) + 'benchmarks/',
    )
]


def rewrite_links(app: Any, docname: str, source: list[str]) -> None:
    """Point links from docs/ pages to ../benchmarks at the copies in docs/benchmarks."""
    if docname.startswith(('api/', 'benchmarks/', 'tutorials/')):
        return
    text = source[0]
    for pattern, replacement in _LINK_REWRITES:
        text = pattern.sub(replacement, text)
    source[0] = text


write_api_pages()
copy_benchmark_pages()


def setup(app: Any) -> None:
    """Connect the link rewriting."""
    app.connect('source-read', rewrite_links)
