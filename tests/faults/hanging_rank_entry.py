"""`nctui` as a torchrun worker of which one rank hangs at a chosen training step, so that a test
can kill it (or let the collective time out) while the other ranks wait for it in the all-reduce.

Run as `torchrun ... hanging_rank_entry.py run ...` with NCTUI_TEST_HANG_RANK (the rank) and
NCTUI_TEST_HANG_STEP (its n-th training step of this process, 1-based). That rank prints
`nctui-test: rank <r> pid <pid> hangs at step <n>` on stderr and sleeps until killed; the others
are nctui as shipped. Nothing in nctui itself knows about this.
"""

from __future__ import annotations

import os
import time

from nctui.cli import entry
from nctui.train.distributed import AllReduceStep

if os.environ.get("RANK") == os.environ["NCTUI_TEST_HANG_RANK"]:
    hang_at = int(os.environ["NCTUI_TEST_HANG_STEP"])
    real_step = AllReduceStep.eager
    steps = 0

    def hanging_step(self: AllReduceStep, idx):  # noqa: ANN001, ANN202 - the step's own signature
        global steps
        steps += 1
        if steps == hang_at:
            os.write(2, f"nctui-test: rank {self.world.rank} pid {os.getpid()} hangs at step {steps}\n".encode())
            while True:
                time.sleep(1)
        return real_step(self, idx)

    AllReduceStep.eager = AllReduceStep.__call__ = hanging_step

entry()
