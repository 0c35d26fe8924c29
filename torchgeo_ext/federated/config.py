"""The settings of a FedFusion federation, read from a flat YAML file (``configs/fedfusion_*.yaml``)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError, MissingInputError

#: Dataset names of a config -> ``module:class`` of the HSI + LiDAR readers.
DATASETS = {
    'houston2013': 'torchgeo_ext.datasets.houston2013:Houston2013',
    'trento': 'torchgeo_ext.datasets.trento:Trento',
    'muufl': 'torchgeo_ext.datasets.muufl:MUUFL',
}
#: Registry names of the models a federation trains.
MODELS = ('fedfusion', 'fedfusion_tiny')


@dataclass
class FederationConfig:
    """What a federation trains, on which scene, and how it communicates.

    Clients come in pairs per region: partition ``2 r`` holds region ``r``'s
    HSI, partition ``2 r + 1`` its LiDAR (regions are vertical strips of the
    scene). Every round the partners exchange their encoders' features of the
    same ``sample_size`` training pixels, as rank-``rank`` SVD factors
    (``rank: 0`` sends the raw features), then train locally; the server
    averages only the shared layers.
    """

    dataset: str = 'houston2013'
    #: Dataset arguments (``root``, ``padding``, ``train_per_class``, ...).
    dataset_kwargs: dict[str, Any] = field(default_factory=dict)
    model: str = 'fedfusion'
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    patch_size: int = 7
    regions: int = 1
    rounds: int = 100
    #: Training pixels whose features are exchanged (and trained on) per round; 0: all.
    sample_size: int = 512
    #: Test pixels evaluated per round; 0: all.
    eval_size: int = 0
    local_epochs: int = 1
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-3
    #: Step decay of the learning rate: times ``lr_gamma`` every ``lr_step`` rounds.
    lr_step: int = 30
    lr_gamma: float = 0.5
    rank: int = 4
    consistency_weight: float = 1.0
    seed: int = 0
    #: Folder for the clients' models and the run's history (none: nothing written).
    output: str | None = None
    #: CPUs Ray may use, and per client (Ray runs ``num_cpus // cpus_per_client`` at once).
    num_cpus: int = 2
    cpus_per_client: float = 1.0
    #: Set by :func:`read_config`: the file, named in errors.
    source: str = '<config>'

    @property
    def num_clients(self) -> int:
        """Clients of the federation: one per modality and region."""
        return 2 * self.regions

    def check(self) -> None:
        """Check the values.

        Raises:
            InvalidInputError: Naming :attr:`source` and the bad value.
        """
        problems = []
        if self.dataset not in DATASETS:
            problems.append(f'dataset must be one of {", ".join(DATASETS)}')
        if self.model not in MODELS:
            problems.append(f'model must be one of {", ".join(MODELS)}')
        positive = (
            'patch_size',
            'regions',
            'rounds',
            'local_epochs',
            'batch_size',
            'lr_step',
        )
        problems += [
            f'{name} must be positive' for name in positive if getattr(self, name) < 1
        ]
        non_negative = ('sample_size', 'eval_size', 'rank', 'consistency_weight')
        problems += [
            f'{name} must be 0 or more'
            for name in non_negative
            if getattr(self, name) < 0
        ]
        if self.lr <= 0 or self.weight_decay < 0 or not 0 < self.lr_gamma <= 1:
            problems.append('need lr > 0, weight_decay >= 0 and 0 < lr_gamma <= 1')
        if self.num_cpus < 1 or not 0 < self.cpus_per_client <= self.num_cpus:
            problems.append('need num_cpus >= 1 and 0 < cpus_per_client <= num_cpus')
        if problems:
            raise InvalidInputError(self.source, '; '.join(problems))

    def learning_rate(self, server_round: int) -> float:
        """The learning rate of a round (1-based), after the step decay."""
        return float(self.lr * self.lr_gamma ** ((server_round - 1) // self.lr_step))

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain values (for the run's history)."""
        return dataclasses.asdict(self)


def read_config(path: str | os.PathLike[str], **overrides: Any) -> FederationConfig:
    """Read and check a federation config.

    Args:
        path: A YAML mapping of :class:`FederationConfig` fields.
        **overrides: Fields that replace the file's (command-line options).

    Returns:
        The checked config.

    Raises:
        MissingInputError: If the file does not exist.
        InvalidInputError: If it is not a mapping of known fields with valid values.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise MissingInputError(path, 'no such config file')
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise InvalidInputError(path, f'not valid YAML ({err})') from err
    if not isinstance(values, dict):
        raise InvalidInputError(path, 'must be a mapping of federation settings')
    known = {f.name for f in dataclasses.fields(FederationConfig)} - {'source'}
    unknown = sorted(set(values) - known)
    if unknown:
        raise InvalidInputError(
            path,
            f'unknown setting(s) {", ".join(unknown)}; known: {", ".join(sorted(known))}',
        )
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        config = FederationConfig(**values, source=str(path))
        config.check()
    except TypeError as err:  # a comparison of a wrongly typed value
        raise InvalidInputError(path, f'a setting has the wrong type ({err})') from err
    return config
