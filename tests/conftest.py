import os

# Before torch starts OpenMP: idle threads sleep instead of spinning, so tests beside another process (a training
# run, a second test worker) do not oversubscribe the cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)  # the tests use tiny tensors: one thread is as fast and never oversubscribes


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
