"""Tests of torchgeo_ext.lazy: PEP 562 exports that import a module on first use."""

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from torchgeo_ext.lazy import lazy_exports


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A throw-away package ``lazypkg`` exporting ``Thing`` and ``make`` lazily.

    Its module ``heavy`` appends to ``lazypkg.imported`` when it is imported.
    """
    root = tmp_path / 'lazypkg'
    root.mkdir()
    (root / '__init__.py').write_text(
        textwrap.dedent(
            """
            from torchgeo_ext.lazy import lazy_exports

            imported = []
            _EXPORTS = {'Thing': 'lazypkg.heavy', 'make': 'lazypkg.heavy'}
            __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
            """
        )
    )
    (root / 'heavy.py').write_text(
        textwrap.dedent(
            """
            import lazypkg

            lazypkg.imported.append('heavy')


            class Thing:
                pass


            def make():
                return Thing()
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield 'lazypkg'
    for name in [m for m in sys.modules if m == 'lazypkg' or m.startswith('lazypkg.')]:
        del sys.modules[name]


def test_module_imported_on_first_use_only(package: str) -> None:
    pkg = __import__(package)
    assert pkg.imported == []
    assert 'lazypkg.heavy' not in sys.modules
    thing_class = pkg.Thing
    assert pkg.imported == ['heavy']
    assert thing_class is sys.modules['lazypkg.heavy'].Thing
    assert isinstance(pkg.make(), thing_class)
    assert pkg.imported == ['heavy']  # imported once


def test_value_is_cached_in_the_namespace(package: str) -> None:
    pkg = __import__(package)
    assert 'Thing' not in vars(pkg)
    first = pkg.Thing
    # Later look-ups find the name in the module, not through __getattr__.
    assert vars(pkg)['Thing'] is first
    assert pkg.Thing is first


def test_from_import_works(package: str) -> None:
    from lazypkg import make  # type: ignore[import-not-found]

    assert callable(make)


def test_unknown_name_raises_attribute_error(package: str) -> None:
    pkg = __import__(package)
    with pytest.raises(
        AttributeError, match="module 'lazypkg' has no attribute 'Nope'"
    ):
        pkg.Nope  # noqa: B018
    assert not hasattr(pkg, 'Nope')
    assert pkg.imported == []  # a wrong name imports nothing
    with pytest.raises(ImportError, match='Nope'):
        from lazypkg import Nope  # type: ignore[import-not-found]  # noqa: F401


def test_dir_lists_exports_before_and_after_import(package: str) -> None:
    pkg = __import__(package)
    names = dir(pkg)
    assert names == sorted(names)
    assert {'Thing', 'make', 'imported'} <= set(names)
    pkg.Thing  # noqa: B018
    assert dir(pkg).count('Thing') == 1


def test_exported_module_missing_fails_on_use(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    module = types.ModuleType('brokenpkg')
    monkeypatch.setitem(sys.modules, 'brokenpkg', module)
    getattr_, _ = lazy_exports('brokenpkg', {'X': 'brokenpkg.does_not_exist'})
    with pytest.raises(ModuleNotFoundError, match=r'brokenpkg\.does_not_exist'):
        getattr_('X')


def test_library_subpackages_export_lazily() -> None:
    from torchgeo_ext import datasets
    from torchgeo_ext.datasets.vedai import VEDAI

    assert 'VEDAI' in dir(datasets)
    assert datasets.__getattr__('VEDAI') is VEDAI
