"""sktime's API conformance suite for MSFTForecaster (offline, tiny settings).

One pytest case per sktime check, so a failure names the check; together they are exactly
``sktime.utils.estimator_checks.check_estimator(MSFTForecaster, raise_exceptions=True)``.
"""

from __future__ import annotations

import pytest
from sktime.utils.estimator_checks import check_estimator, parametrize_with_checks

from msft_forecast import MSFTForecaster


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Run this module's tiny models on one torch thread.

    They gain nothing from threads, and on a busy shared machine OpenMP's spinning barriers
    make every small parallel region wait for a descheduled thread (a 2-minute run took 20).
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
@parametrize_with_checks(MSFTForecaster)
def test_sktime_conformance(obj, test_name):
    check_estimator(obj, tests_to_run=test_name, raise_exceptions=True, verbose=False)
