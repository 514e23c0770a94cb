"""An exactly resumable block loader whose state is one integer.

The global order of blocks is a seeded permutation per epoch; optimizer step s reads global
positions [s*G, (s+1)*G) of that order (G = global batch) and rank r takes every W-th of them
(positions r, r+W, ...). The state is `blocks_consumed` plus the seed, so resume is instant and
the same global batches follow at any world size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from harness.data.packing import PackedBlocks


@dataclass
class LoaderState:
    """Everything needed to continue the data stream."""

    blocks_consumed: int = 0
    seed: int = 0

    def to_dict(self) -> dict[str, int]:
        """JSON-able form."""
        return asdict(self)


class BlockLoader:
    """Micro batches for one rank, one optimizer step at a time."""

    def __init__(
        self,
        blocks: PackedBlocks,
        global_batch: int,
        micro_batch: int,
        rank: int,
        world: int,
        state: LoaderState,
    ):
        if len(blocks) == 0:
            raise ValueError(
                f"no training blocks in {blocks.folder}: the corpus is smaller than one block of {blocks.seq_len} tokens"
            )
        if global_batch % (micro_batch * world):
            raise ValueError(
                f"global batch {global_batch} not divisible by micro batch {micro_batch} x world {world}"
            )
        self.blocks = blocks
        self.global_batch = global_batch
        self.micro_batch = micro_batch
        self.rank = rank
        self.world = world
        self.state = state
        self._perm_epoch = -1
        self._perm: np.ndarray | None = None

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._perm_epoch:
            rng = np.random.default_rng([self.state.seed, epoch])
            self._perm = rng.permutation(len(self.blocks))
            self._perm_epoch = epoch
        return self._perm  # type: ignore[return-value]

    def block_index(self, position: int) -> int:
        """Block id at a global position of the stream (epochs wrap with a fresh permutation)."""
        n = len(self.blocks)
        return int(self._permutation(position // n)[position % n])

    def rank_positions(self, start: int) -> list[int]:
        """Global positions this rank reads in the step whose batch starts at `start`."""
        return list(range(start + self.rank, start + self.global_batch, self.world))

    def next_step(self) -> list[dict[str, torch.Tensor]]:
        """The micro batches of the next optimizer step for this rank; advances the state."""
        positions = self.rank_positions(self.state.blocks_consumed)
        ids = [self.block_index(p) for p in positions]
        self.state.blocks_consumed += self.global_batch
        batches = []
        for i in range(0, len(ids), self.micro_batch):
            chunk = ids[i : i + self.micro_batch]
            tokens, scores = self.blocks[chunk]
            batches.append(
                {"input_ids": torch.from_numpy(tokens), "scores": torch.from_numpy(scores)}
            )
        return batches

    @property
    def epoch(self) -> float:
        """Fractional epochs consumed."""
        return self.state.blocks_consumed / len(self.blocks)
