import os
import sys

import pytest

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from pgcluster import PgCluster  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running test")


@pytest.fixture(scope="session")
def pg():
    """A started throwaway PostgreSQL cluster, shared by the whole session."""
    with PgCluster() as cluster:
        yield cluster
