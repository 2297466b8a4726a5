"""Tests that need a tool or a service: skip with the reason where it is missing, fail where CI=true.

    from _need import missing, need
    need(mp.find_micropython, mp.find_mpy_cross)   # a HarnessError skips (fails under CI)
    missing("PostgreSQL does not answer on 127.0.0.1:5432")
"""

import os

import pytest
from lightnode.errors import HarnessError


def missing(reason):
    """Skip with ``reason``; where CI=true everything is installed, so fail instead."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def need(*checks):
    """Run each check (a finder such as ``mp.find_micropython``); the last one's result."""
    out = None
    for check in checks:
        try:
            out = check()
        except HarnessError as e:
            missing(str(e))
    return out
