"""Fixtures shared by the test files: the small embedded start is built once per test session."""
import pytest

import toy


@pytest.fixture(scope="session")
def toy_start(tmp_path_factory):
    """A cached toy.prepare_toy folder (policy/, reward/) with the smaller TEST_TOY start."""
    toy_dir = tmp_path_factory.mktemp("toy")
    toy.prepare_toy(str(toy_dir), **toy.TEST_TOY)
    return toy_dir
