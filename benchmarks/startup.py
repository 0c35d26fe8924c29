"""Benchmark start-up time and memory of the command line.

Measures, in one run, each command in fresh processes (the best of ``--repeat``
runs for time; the peak memory of the same runs):

(a) ``python -c pass`` and ``python -c 'import torch'``: the floor every
    torch command pays on this machine;
(b) importing the subpackages ``models``, ``trainers`` and ``pipelines``
    (lazy: no third-party import until a name is used);
(c) ``torchgeo-ext --help`` (target: under 0.2 s);
(d) ``torchgeo-ext anomaly scene.tif -o out.tif --method rx`` on a
    128 x 128 x 50 scene (target: at most 3 s and 400 MB peak RSS).

Peak memory is reported two ways: the peak resident set size (``ru_maxrss``
of the child, which counts the pages of shared libraries it touched) and the
peak of its anonymous memory (``RssAnon``, sampled every 5 ms: the memory the
process itself allocates). Each run also lists which heavy packages the
command imported.

``--source DIR`` runs the commands against another checkout of the library
(e.g. an older commit made with ``git worktree add``), so that a before/after
comparison comes from one run on the same machine and load.

Usage::

    .venv/bin/python benchmarks/startup.py
    .venv/bin/python benchmarks/startup.py --repeat 5 --source /tmp/old-checkout
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

#: Packages whose presence in ``sys.modules`` after a command is reported.
HEAVY = (
    'torch',
    'rasterio',
    'lightning',
    'torchvision',
    'torchgeo',
    'timm',
    'kornia',
    'torchmetrics',
    'geopandas',
    'pandas',
    'scipy',
    'matplotlib',
)

#: Appended to each measured program: prints the heavy modules it imported.
REPORT = (
    f'import sys, json; print("@@" + json.dumps(sorted(m for m in {HEAVY!r} '
    'if m in sys.modules)))'
)


def _anon_kib(pid: int) -> int:
    try:
        with open(f'/proc/{pid}/status') as status:
            for line in status:
                if line.startswith('RssAnon:'):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure(code: str, env: dict[str, str], cwd: Path) -> dict[str, object]:
    """Run ``python -c code`` once; its wall time, peak RSS and peak anonymous memory.

    Args:
        code: Program text.
        env: Environment of the child.
        cwd: Its working directory (``python -c`` puts it first on ``sys.path``:
            it must not hold a ``torchgeo_ext`` that would shadow ``--source``).

    Returns:
        ``wall_s``, ``maxrss_mb``, ``anon_peak_mb`` and ``heavy`` (imported packages).
    """
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, '-c', code + '\n' + REPORT],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _anon_kib(proc.pid))
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    out = proc.stdout.read() if proc.stdout else ''
    err = proc.stderr.read() if proc.stderr else ''
    if proc.returncode != 0:
        raise RuntimeError(f'{code!r} failed ({proc.returncode}): {err[-2000:]}')
    heavy = json.loads(out.rsplit('@@', 1)[1]) if '@@' in out else []
    return {
        'wall_s': wall,
        'maxrss_mb': usage.ru_maxrss / 1024,
        'anon_peak_mb': peak / 1024,
        'heavy': heavy,
    }


def best(code: str, env: dict[str, str], cwd: Path, repeat: int) -> dict[str, object]:
    """The fastest of *repeat* runs, with the largest memory peaks seen."""
    runs = [measure(code, env, cwd) for _ in range(repeat)]
    result = min(runs, key=lambda r: float(r['wall_s']))  # type: ignore[arg-type]
    result['maxrss_mb'] = max(float(r['maxrss_mb']) for r in runs)  # type: ignore[arg-type]
    result['anon_peak_mb'] = max(float(r['anon_peak_mb']) for r in runs)  # type: ignore[arg-type]
    result['walls_s'] = [round(float(r['wall_s']), 2) for r in runs]  # type: ignore[arg-type]
    return result


def main() -> None:
    """Run the benchmark and print one JSON line per measurement."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--repeat', type=int, default=3, help='runs per command')
    parser.add_argument(
        '--source', type=Path, help='checkout of the library to run instead of this one'
    )
    args = parser.parse_args()

    env = dict(os.environ)
    if args.source is not None:
        env['PYTHONPATH'] = os.pathsep.join(
            [str(args.source.resolve()), env.get('PYTHONPATH', '')]
        ).rstrip(os.pathsep)
    with tempfile.TemporaryDirectory() as tmp:
        source = subprocess.run(
            [sys.executable, '-c', 'import torchgeo_ext; print(torchgeo_ext.__file__)'],
            env=env,
            cwd=tmp,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        print(json.dumps({'load_average': os.getloadavg(), 'library': source}))
        scene = Path(tmp) / 'scene.tif'
        subprocess.run(
            [
                sys.executable,
                '-c',
                (
                    'from torchgeo_ext.demos.scene import make_demo_scene; '
                    f'make_demo_scene({str(scene)!r}, size=128, bands=50)'
                ),
            ],
            env=env,
            cwd=tmp,
            check=True,
        )
        out = Path(tmp) / 'out.tif'
        programs = {
            'python -c pass': 'pass',
            'import torch': 'import torch',
            'import torchgeo_ext.{models,trainers,pipelines}': (
                'import torchgeo_ext.models, torchgeo_ext.trainers, torchgeo_ext.pipelines'
            ),
            'torchgeo-ext --help': (
                'import contextlib, io\n'
                'from torchgeo_ext.cli import main\n'
                'with contextlib.redirect_stdout(io.StringIO()):\n'
                '    main([])'
            ),
            'torchgeo-ext anomaly --method rx (128 x 128 x 50)': (
                'from torchgeo_ext.cli import main\n'
                f"assert main(['anomaly', {str(scene)!r}, '-o', {str(out)!r}, "
                "'--method', 'rx']) == 0"
            ),
        }
        for name, code in programs.items():
            result = best(code, env, Path(tmp), args.repeat)
            print(json.dumps({'command': name, **result}))


if __name__ == '__main__':
    main()
