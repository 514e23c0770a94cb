"""MLE whose data treatment is slowed down, so that a test can kill the pack stage midway."""

import time

from harness.objectives.base import MLE


class SlowTreatmentMLE(MLE):
    """MLE; treating a record takes 15 ms."""

    def treat(self, record):
        time.sleep(0.015)
        return super().treat(record)
