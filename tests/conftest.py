"""Session-wide: the BitMEX contract check watches every simulator of the run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.sandbox.bitmex import server
from tests.contract import ContractChecker


@pytest.fixture(scope="session", autouse=True)
def bitmex_contract() -> Iterator[ContractChecker]:
    """Every request the client sends to a simulator and every answer it gives (REST rows
    and WebSocket rows), checked against BitMEX's published shape; the session fails at
    its end when something did not fit (see tests/contract.py)."""
    checker = ContractChecker()
    server.OBSERVERS.append(checker)
    yield checker
    server.OBSERVERS.remove(checker)
    assert not checker.problems, "BitMEX contract broken:\n" + checker.report()
