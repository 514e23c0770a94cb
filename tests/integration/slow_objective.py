"""MLE whose data treatment is slowed down, so that a test can kill the pack stage midway."""

import time

from harness.objectives.base import MLE


class SlowTreatmentMLE(MLE):
    """MLE; treating a record takes 15 ms."""

    def treat(self, record):
        time.sleep(0.015)
        return super().treat(record)


class SlowStepMLE(MLE):
    """MLE whose every micro-batch takes at least 0.5 s, so a test can signal a step midway."""

    def coefficients(self, *args, **kwargs):
        time.sleep(0.5)
        return super().coefficients(*args, **kwargs)
