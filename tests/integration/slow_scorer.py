"""A PEP8 scorer slowed down so that a test can kill a scoring run midway."""

import time

from harness.scoring.pep8 import PEP8Scorer


class SlowPEP8Scorer(PEP8Scorer):
    """PEP8 scores, 20 ms per document."""

    def score_documents(self, texts):
        time.sleep(0.02 * len(texts))
        return super().score_documents(texts)
