"""Fixtures of the Slurm glue's tests: a real single-node Slurm cluster on this machine.

``.ci/services.sh start_slurm`` starts munged, slurmctld and slurmd (the fixture runs it
when Slurm is installed but down). Under CI=true a missing Slurm fails the tests.
"""

from __future__ import annotations

import pytest

from tests.services import require, start_slurm


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    """A Slurm cluster whose controller answers and whose node is up."""
    require("Slurm (munged, slurmctld, slurmd)", start_slurm())
