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
        'sarnet_ssdd',
        'sarnet_rssdd',
        'sarnet_hrsid',
        'sarnet_sar_aircraft',
        'seadate_llvip',
        'seadate_vedai',
        'seadate_dronevehicle',
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


TINY_SEADATE = sorted((Path(__file__).parent / 'conf').glob('seadate_*.yaml'))


@pytest.mark.slow
@pytest.mark.filterwarnings('ignore:(LLVIP|VEDAI|DroneVehicle). :UserWarning')
@pytest.mark.parametrize('config', TINY_SEADATE, ids=[p.stem for p in TINY_SEADATE])
def test_tiny_seadate_config_fits_under_torchgeo(config: Path, tmp_path: Path) -> None:
    # The library's command line runs every tiny config in tests/trainers/
    # (test_task_pattern); TorchGeo's own runs these with full class paths.
    from torchgeo.main import main as torchgeo_main

    torchgeo_main(
        ['fit', '--config', str(config), '--trainer.default_root_dir', str(tmp_path)]
    )
    assert len(list((tmp_path / 'checkpoints').glob('*.ckpt'))) == 1
