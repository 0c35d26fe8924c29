"""SAP (self-supervised anomaly prior) against RX, LRX and CRD (results in benchmarks/sap.md).

The scenes of ``benchmarks/anomaly.py`` (the demo scene and the three
semi-real scenes: real Landsat 7, Landsat 8 and Sentinel-2 windows with
implanted sub-pixel targets), several seeds. Rows: RX, LRX and CRD (5/9,
deterministic); SAP as ``sap_scores`` runs it (the prior trained
self-supervised on the scene, 200 steps); the same dual-purified LRR with
the prior replaced by a constant "all background" network (the ablation of
the learned prior: plain median shrinkage); the prior's pixel map alone
(on the scene's rank-3 residual); SAP without the second purification.

Run: ``.venv/bin/python benchmarks/sap.py [--seeds N] [--size S] [--scenes NAME ...]``
(the first run downloads the scenes as ``benchmarks/anomaly.py`` does).
"""

from __future__ import annotations

import argparse
import time

import torch
from anomaly import SOURCES, print_rows, semi_real_scenes

from torchgeo_ext.metrics.anomaly import auc_d_f, auc_d_f_thresholds
from torchgeo_ext.models.local_anomaly import crd_scores, lrx_scores
from torchgeo_ext.models.rx import rx_scores
from torchgeo_ext.models.sap import AnomalyPrior, fit_prior, prior_input, sap_scores


class BackgroundPrior(AnomalyPrior):
    """Calls every pixel background: SAP's solver with plain median shrinkage."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], *x.shape[2:]), -50.0)


def sap_variants(cube: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
    """SAP, its ablations and the prior map, sharing one trained prior."""
    x = torch.as_tensor(cube, dtype=torch.float32)
    scaled = (x - x.min()) / (x.max() - x.min()).clamp_min(1e-12)
    prior = fit_prior(scaled, steps=200, seed=seed)
    with torch.no_grad():
        prior_map = prior(prior_input(scaled[None]))[0]
    return {
        'SAP (prior trained on the scene, 200 steps)': sap_scores(
            x, prior=prior, fit_steps=0, seed=seed
        ),
        'SAP, no second purification': sap_scores(
            x, prior=prior, fit_steps=0, purge=0.0, seed=seed
        ),
        'SAP solver, constant prior (ablation)': sap_scores(
            x, prior=BackgroundPrior(), fit_steps=0, seed=seed
        ),
        'prior pixel map alone': prior_map,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--seeds', type=int, default=3)
    parser.add_argument('--size', type=int, default=24)
    parser.add_argument(
        '--scenes', nargs='*', help=f'subset of: demo, {", ".join(SOURCES)}'
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    scenes = semi_real_scenes(args.size, args.scenes)
    rows: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for scene, (cube, truth) in scenes.items():
        fixed = {
            'RX': rx_scores(cube),
            'LRX (5/9)': lrx_scores(cube),
            'CRD (5/9)': crd_scores(cube),
        }
        for name, scores in fixed.items():
            rows.setdefault(name, {})[scene] = [
                (auc_d_f(scores, truth), auc_d_f_thresholds(scores, truth))
            ]
        for seed in range(args.seeds):
            start = time.perf_counter()
            for name, scores in sap_variants(cube, seed).items():
                rows.setdefault(name, {}).setdefault(scene, []).append(
                    (auc_d_f(scores, truth), auc_d_f_thresholds(scores, truth))
                )
            print(
                f'# {scene} seed {seed}: {time.perf_counter() - start:.0f} s',
                flush=True,
            )
    print(f'\n{args.size} x {args.size} scenes, {args.seeds} seeds\n')
    print_rows(scenes, rows)


if __name__ == '__main__':
    main()
