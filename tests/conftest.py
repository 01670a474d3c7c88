"""Shared fixtures: seeded randomness and small configurations of every registered model."""

import numpy as np
import pytest
import torch

from unetlab import create_model

# One intra-op thread: the tests' tensors are tiny, and on a shared 2-core machine OpenMP threads that spin while
# waiting for a busy core made the suite up to 10x slower. Tests check behaviour; benchmarks/ measure speed.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


def tiny_kwargs(name: str) -> dict:
    """A small but complete configuration of the registered model `name` (every block type present)."""
    if name.startswith("resnet"):
        return {"base_channels": 4, "depth": 3, "in_channels": 2}
    return {"base_channels": 4, "depth": 2, "in_channels": 2}


def tiny_model(name: str, **overrides) -> torch.nn.Module:
    return create_model(name, **{**tiny_kwargs(name), **overrides})
