"""Run ``predict-many``'s RX job and die by SIGKILL mid-write (for tests/pipelines/test_batch.py).

Usage: python tests/pipelines/batch_kill_script.py LIST OUTPUT_DIR KILL_AT

The process kills itself with SIGKILL (no clean-up runs, as when a cluster
pre-empts a job) while the output of input number KILL_AT (0-based) is being
written.
"""

import os
import signal
import sys
from pathlib import Path
from typing import Any

from torchgeo_ext.pipelines.anomaly import anomaly_raster
from torchgeo_ext.pipelines.batch import collect_inputs, predict_many


def main() -> None:
    listing, output_dir, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
    calls = 0

    def job(sources: list[str], outputs: list[Path]) -> Any:
        nonlocal calls
        if calls == kill_at:
            # A half-written temporary file, as a writer leaves it when killed.
            (
                outputs[0].parent / f'.{outputs[0].stem}.tmp-{os.getpid()}-dead.tif'
            ).write_bytes(b'II*\x00')
            os.kill(os.getpid(), signal.SIGKILL)
        calls += 1
        return anomaly_raster(sources[0], outputs[0], method='rx')

    predict_many(collect_inputs([listing]), output_dir, job, ['.tif'])


if __name__ == '__main__':
    main()
