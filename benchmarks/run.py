"""Run the benchmark scripts of this folder, one after the other (``make benchmarks``).

Each script runs in its own process with its default options and prints its
own results; the pages (``benchmarks/<name>.md``) record them with the
machine, the load average and the command. Scripts are found by listing the
folder, so a new benchmark needs no change here.

Usage::

    .venv/bin/python benchmarks/run.py                    # every benchmark
    .venv/bin/python benchmarks/run.py startup export     # some of them
    .venv/bin/python benchmarks/run.py --list
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def scripts() -> dict[str, Path]:
    """The benchmark scripts of this folder by name (every ``*.py`` but this one)."""
    return {
        path.stem: path
        for path in sorted(HERE.glob('*.py'))
        if path.name != Path(__file__).name
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks named on the command line (default: all).

    Args:
        argv: Arguments without the program name.

    Returns:
        0 if every benchmark succeeded, else 1.
    """
    available = scripts()
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument(
        'names', nargs='*', metavar='NAME', help=f'among {", ".join(available)}'
    )
    parser.add_argument('--list', action='store_true', help='list the benchmarks')
    args = parser.parse_args(argv)
    if args.list:
        print('\n'.join(available))
        return 0
    unknown = sorted(set(args.names) - set(available))
    if unknown:
        parser.error(f'unknown benchmark(s) {", ".join(unknown)}')
    failed = []
    for name in args.names or list(available):
        print(f'== {name} (load average {os.getloadavg()})', flush=True)
        start = time.perf_counter()
        command = [sys.executable, str(available[name])]
        status = subprocess.run(command, check=False).returncode
        print(f'== {name}: exit {status} after {time.perf_counter() - start:.0f} s')
        if status != 0:
            failed.append(name)
    if failed:
        print(f'failed: {", ".join(failed)}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
