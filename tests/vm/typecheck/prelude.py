# Prepended to a VM test script before mypy checks it, as nixpkgs' test driver does with its
# test-script-prepend.py: the names the driver puts in a script's globals, typed. After this
# come the machines ("machine: Machine;", one per node), the VLANs, then the script.
# Written for tests/vm/typecheck from the driver's test_symbols (see NIXPKGS-FACTS.md).
import os  # noqa: F401 (a global of every script)
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol
from unittest import TestCase

from test_driver.driver import Driver
from test_driver.logger import Logger
from test_driver.machine import BaseMachine, Machine  # noqa: F401 (BaseMachine: a global)
from test_driver.vlan import VLan


class RetryProtocol(Protocol):
    def __call__(self, fn: Callable[[bool], bool], timeout_seconds: int = 900) -> None: ...


class CreateMachineProtocol(Protocol):
    def __call__(
        self, start_command: str, *, name: str | None = None, keep_machine_state: bool = False
    ) -> Machine: ...


class PollingConditionProtocol(Protocol):
    def __call__(
        self,
        fun_: Callable[..., Any] | None = None,
        *,
        seconds_interval: float = 2.0,
        description: str | None = None,
    ) -> (
        Callable[[Callable[..., Any]], AbstractContextManager[None]] | AbstractContextManager[None]
    ): ...


start_all: Callable[[], None]
subtest: Callable[[str], AbstractContextManager[None]]
retry: RetryProtocol
test_script: Callable[[], None]
machines: list[Machine]
vlans: list[VLan]
driver: Driver
log: Logger
create_machine: CreateMachineProtocol
run_tests: Callable[[], None]
join_all: Callable[[], None]
serial_stdout_off: Callable[[], None]
serial_stdout_on: Callable[[], None]
polling_condition: PollingConditionProtocol
t: TestCase
