"""Fixtures of the training tests."""

import pytest
from dpdd_tree import write_dpdd


@pytest.fixture
def dpdd_root(tmp_path):
    return write_dpdd(tmp_path / "dpdd")
