"""Run the Triton kernels in interpreter mode (CPU tensors) when there is no GPU.

TRITON_INTERPRET is read when a kernel is decorated with @triton.jit, i.e. when
kernels.triton_token_loss is first imported, so it has to be set before that import.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
