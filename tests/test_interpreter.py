"""PYTHON_SWITCH_INTERVAL_MS: the interpreter's switch interval while a service runs, put back after."""
from __future__ import annotations

import sys

import pytest

from phantom_scraper.app import interpreter
from phantom_scraper.config import Settings


@pytest.fixture
def original():
    before = sys.getswitchinterval()
    yield before
    sys.setswitchinterval(before)


def test_the_first_service_sets_it_and_the_last_one_puts_it_back(original):
    a, b = object(), object()
    interpreter.start(a, 1.0)
    assert sys.getswitchinterval() == pytest.approx(0.001)
    interpreter.start(b, 0.25)  # a second service in the process: the first one's value stands
    assert sys.getswitchinterval() == pytest.approx(0.001)
    interpreter.stop(a)
    assert sys.getswitchinterval() == pytest.approx(0.001)
    interpreter.stop(b)
    assert sys.getswitchinterval() == pytest.approx(original)
    interpreter.stop(b)  # a service that stops twice, or never started: nothing changes
    interpreter.stop(object())
    assert sys.getswitchinterval() == pytest.approx(original)


def test_zero_leaves_the_interpreter_alone(original):
    owner = object()
    interpreter.start(owner, 0)
    assert sys.getswitchinterval() == pytest.approx(original)
    interpreter.stop(owner)
    assert sys.getswitchinterval() == pytest.approx(original)


def test_the_setting():
    assert Settings().switch_interval_ms == 1.0
    assert Settings.from_env({"PYTHON_SWITCH_INTERVAL_MS": "0.5"}).switch_interval_ms == 0.5
