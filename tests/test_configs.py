from pathlib import Path

import pytest

from torchgeo_ext.cli import main

CONFIGS = sorted((Path(__file__).parents[1] / 'configs').glob('*.yaml'))
#: Federation configs (``torchgeo-ext federated``), checked in tests/federated/test_config.py.
FEDERATED = [path for path in CONFIGS if path.stem.startswith('fedfusion_')]
LIGHTNING = [path for path in CONFIGS if path not in FEDERATED]


def test_every_paper_model_has_a_config() -> None:
    names = {path.stem for path in CONFIGS}
    expected = {
        'superyolo_vedai',
        'ghost_vedai',
        'lma_dronevehicle',
        'e2emfd_dronevehicle',
        'bsdm_had100',
        'stad_had100',
        'dianet_fyh',
        'fusionsam_mfnet',
        'fusionsam_fmb',
        'mivit_houston2013',
        'mivit_trento',
        'mivit_muufl',
        'm3amba_houston2013',
        'm3amba_trento',
        'm3amba_muufl',
        'hymamba_hotc',
        'fedfusion_houston2013',
        'fedfusion_trento',
        'fedfusion_muufl',
    }
    assert expected <= names


@pytest.mark.parametrize('config', LIGHTNING, ids=[path.stem for path in LIGHTNING])
def test_paper_config_parses(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Class paths and every init argument are checked against the signatures.
    with pytest.raises(SystemExit) as info:
        main(['fit', '--config', str(config), '--print_config'])
    assert info.value.code in (0, None)
    printed = capsys.readouterr().out
    assert 'class_path: torchgeo_ext.' in printed
