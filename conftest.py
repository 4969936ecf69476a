"""Fixtures shared by the test files: the small embedded start is built once per test session."""
import pytest

import cooper


@pytest.fixture(scope="session")
def toy_start(tmp_path_factory):
    """A cached cooper.prepare_toy folder (policy/, reward/) with the smaller TEST_TOY start."""
    toy_dir = tmp_path_factory.mktemp("toy")
    cooper.prepare_toy(str(toy_dir), **cooper.TEST_TOY)
    return toy_dir
