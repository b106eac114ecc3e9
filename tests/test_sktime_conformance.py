"""sktime's API conformance suite for MSFTForecaster (offline, tiny settings).

One pytest case per sktime check, so a failure names the check; together they are exactly
``sktime.utils.estimator_checks.check_estimator(MSFTForecaster, raise_exceptions=True)``.
"""

from __future__ import annotations

import pytest
from sktime.utils.estimator_checks import check_estimator, parametrize_with_checks

from msft_forecast import MSFTForecaster


@pytest.mark.slow
@parametrize_with_checks(MSFTForecaster)
def test_sktime_conformance(obj, test_name):
    check_estimator(obj, tests_to_run=test_name, raise_exceptions=True, verbose=False)
