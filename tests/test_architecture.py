"""The import layers of docs/architecture.md, checked on every module's source.

Imports are read with :mod:`ast`, including those inside functions and under
``TYPE_CHECKING``: a lazy import up the layers is still a dependency that runs
the wrong way.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / 'torchgeo_ext'

#: Layer of each top-level unit of the package (higher imports lower, never the
#: reverse; units of one layer may import each other). See docs/architecture.md.
LAYERS = {
    '': 0,  # torchgeo_ext/__init__.py (__version__)
    'errors': 0,
    'options': 0,
    'lazy': 0,
    'ops': 1,
    'datasets': 2,
    'samplers': 2,
    'export': 2,
    'metrics': 2,
    'demo_scene': 2,  # deprecated alias of demos.scene
    'converters': 3,  # offline converters (FYH): read datasets' stored layout
    'datamodules': 3,
    'models': 4,
    'losses': 5,
    'trainers': 6,
    'pipelines': 7,
    'federated': 7,  # FedFusion on Flower: the only importer of flwr (an optional extra)
    'commands': 8,
    'cli': 8,
    'demos': 8,  # the demos: train and run models on synthetic scenes
    'demo_detection': 8,  # deprecated alias of demos.detection
}

#: Pipelines that load a checkpoint or dispatch to their models; every other
#: pipeline is generic and imports nothing from the models layer up.
TASK_PIPELINES = {
    'anomaly',
    'anomaly_fitted',
    'checkpoint_detection',
    'checkpoints',
    'sam',
    'segmentation',
    'task_detection',
}

#: Known upward imports being removed (importer, imported), each with its reason.
ALLOWED: set[tuple[str, str]] = {
    # Deprecated aliases left at the old import paths of moved modules.
    ('torchgeo_ext.options', 'torchgeo_ext.commands._options'),
    ('torchgeo_ext.demo_scene', 'torchgeo_ext.demos.scene'),
    ('torchgeo_ext.datasets.fyh_builder', 'torchgeo_ext.converters.fyh'),
}


def modules() -> list[tuple[str, Path]]:
    """Every module of the package: (dotted name, path)."""
    found = []
    for path in sorted(PACKAGE.rglob('*.py')):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix('').parts)
        if parts[-1] == '__init__':
            parts = parts[:-1]
        found.append(('.'.join(parts), path))
    return found


def imports(name: str, path: Path) -> set[str]:
    """The torchgeo_ext modules (or names) that a module imports, made absolute."""
    package = name if path.name == '__init__.py' else name.rpartition('.')[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')
                base = base[: len(base) - node.level + 1]
                module = '.'.join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ''
            if node.level and node.module is None:
                found |= {f'{module}.{alias.name}' for alias in node.names}
            else:
                found.add(module)
    return {m for m in found if m == 'torchgeo_ext' or m.startswith('torchgeo_ext.')}


def unit(module: str) -> str:
    """The top-level unit of a dotted name (``torchgeo_ext.models.rx`` -> ``models``)."""
    parts = module.split('.')
    return parts[1] if len(parts) > 1 and parts[1] != '__version__' else ''


def test_every_unit_has_a_layer() -> None:
    units = {unit(name) for name, _ in modules()}
    missing = sorted(units - set(LAYERS))
    assert not missing, f'give {missing} a layer in LAYERS and docs/architecture.md'


def test_no_import_runs_up_the_layers() -> None:
    wrong = []
    for name, path in modules():
        src = unit(name)
        if src not in LAYERS:
            continue  # reported by test_every_unit_has_a_layer
        for target in sorted(imports(name, path)):
            dst = unit(target)
            if (name, target) in ALLOWED or dst not in LAYERS:
                continue
            if LAYERS[dst] > LAYERS[src]:
                wrong.append(f'{name} imports {target} ({src} is below {dst})')
    assert not wrong, '\n'.join(wrong)


def test_generic_pipelines_import_no_models_or_trainers() -> None:
    wrong = []
    for name, path in modules():
        parts = name.split('.')
        if len(parts) != 3 or parts[1] != 'pipelines' or parts[2] in TASK_PIPELINES:
            continue
        for target in sorted(imports(name, path)):
            dst = unit(target)
            task_pipeline = dst == 'pipelines' and any(
                target.startswith(f'torchgeo_ext.pipelines.{t}') for t in TASK_PIPELINES
            )
            if LAYERS.get(dst, 0) >= LAYERS['models'] and (
                dst != 'pipelines' or task_pipeline
            ):
                wrong.append(f'{name} imports {target}')
    assert not wrong, '\n'.join(wrong)


def top_level_names(path: Path) -> set[str]:
    """Names a module defines or imports at its top level (TYPE_CHECKING included)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.AnnAssign | ast.TypeAlias) and isinstance(
            node.target if isinstance(node, ast.AnnAssign) else node.name, ast.Name
        ):
            target = node.target if isinstance(node, ast.AnnAssign) else node.name
            assert isinstance(target, ast.Name)
            names.add(target.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split('.')[0] for a in node.names}
        elif isinstance(node, ast.If):  # if TYPE_CHECKING / version checks
            for inner in node.body:
                if isinstance(inner, ast.Import | ast.ImportFrom):
                    names |= {(a.asname or a.name).split('.')[0] for a in inner.names}
    return names


LAZY_INITS = sorted(
    path for path in PACKAGE.glob('*/__init__.py') if '_EXPORTS' in path.read_text()
)


@pytest.mark.parametrize('init', LAZY_INITS, ids=lambda p: p.parent.name)
def test_lazy_exports_agree(init: Path) -> None:
    # `_EXPORTS` (run time) and the TYPE_CHECKING imports (type checkers) list
    # the same names from the same modules, and each module defines its names.
    package = f'torchgeo_ext.{init.parent.name}'
    tree = ast.parse(init.read_text())
    exports: dict[str, str] = {}
    checked: dict[str, str] = {}
    for node in tree.body:
        if (
            isinstance(node, ast.AnnAssign | ast.Assign)
            and 'exports' in ast.unparse(node).split('=')[0].lower()
        ):
            assert isinstance(node.value, ast.Dict)
            exports = {
                ast.literal_eval(k): ast.literal_eval(v)  # type: ignore[arg-type]
                for k, v in zip(node.value.keys, node.value.values)
            }
        if isinstance(node, ast.If) and 'TYPE_CHECKING' in ast.unparse(node.test):
            for inner in node.body:
                assert isinstance(inner, ast.ImportFrom), ast.unparse(inner)
                assert inner.level == 1, ast.unparse(inner)
                for alias in inner.names:
                    checked[alias.asname or alias.name] = f'{package}.{inner.module}'
    assert exports == checked
    for name, module in exports.items():
        path = PACKAGE.parent / (module.replace('.', '/') + '.py')
        assert path.exists(), f'{name}: no module {module}'
        assert name in top_level_names(path), f'{module} does not define {name}'


def test_only_the_federated_package_imports_flower() -> None:
    # flwr (and Ray) come with the optional `federated` extra.
    wrong = []
    for name, path in modules():
        if unit(name) == 'federated':
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                found = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                found = [node.module or '']
            else:
                continue
            wrong += [
                f'{name} imports {m}'
                for m in found
                if m.split('.')[0] in ('flwr', 'ray')
            ]
    assert not wrong, '\n'.join(wrong)
