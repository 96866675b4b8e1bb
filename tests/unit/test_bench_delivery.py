"""The benchmark's end-of-run delivery check (bench.load.await_delivery): it waits out frame
tails that a server PING to another queue member made look complete, and still reports lost,
duplicated or foreign bytes. Byte counts are scripted over time; no server is involved."""

from __future__ import annotations

import time

import pytest
from bench.load import PING, LoadError, await_delivery, delivery_state

FRAME = 149       # "MSG bench.s 1 128\r\n" + 128 B payload + CRLF
SENT = 400        # messages published
PER_SUB = SENT * FRAME
P = len(PING)


class Script:
    """Byte counts that change at given times (seconds after the first read)."""

    def __init__(self, steps: list[tuple[float, list[int]]]) -> None:
        self.steps, self.t0 = steps, 0.0
        self.closed: dict[int, str] = {}

    def poll(self) -> None:
        pass

    def read(self) -> list[int]:
        now = time.monotonic()
        self.t0 = self.t0 or now
        current = self.steps[0][1]
        for at, totals in self.steps:
            if now - self.t0 >= at:
                current = totals
        return list(current)


def wait(script: Script, queue: bool, stall: float = 0.3) -> list[int]:
    return await_delivery(script.read, PER_SUB, queue, SENT, script, lambda: None, stall=stall, quiet=0.05)


def test_state_of_the_counts() -> None:
    q = [100 * FRAME] * 4
    assert delivery_state(q, PER_SUB, queue=True) == "done"
    assert delivery_state([q[0] + P, q[1], q[2], q[3] + 2 * P], PER_SUB, queue=True) == "done"
    # One member's PING makes the sum pass the mark while 4 bytes of a frame are on their way.
    assert delivery_state([q[0] + P, q[1], q[2], q[3] - 4], PER_SUB, queue=True) == "short"
    assert delivery_state([q[0] + FRAME, q[1], q[2], q[3]], PER_SUB, queue=True) == "over"   # a duplicate
    assert delivery_state([PER_SUB + 2 * P, PER_SUB], PER_SUB, queue=False) == "done"
    assert delivery_state([PER_SUB + 3 * P, PER_SUB], PER_SUB, queue=False) == "over"
    assert delivery_state([PER_SUB + P, PER_SUB - FRAME + P], PER_SUB, queue=False) == "short"


def test_queue_tail_behind_a_ping_is_waited_for() -> None:
    # The sum reaches the mark (PINGs to two members) 100 ms before the last 10 bytes of a
    # frame reach the fourth member: the old check (50 ms after the mark) failed here.
    q = 100 * FRAME
    script = Script([(0.0, [q + P, q + P, q, q - 10]), (0.1, [q + P, q + P, q, q])])
    assert wait(script, queue=True) == [q + P, q + P, q, q]


def test_a_lost_message_is_still_reported() -> None:
    q = 100 * FRAME
    # One frame never arrives; two PINGs do not make up for it.
    script = Script([(0.0, [q + P, q + P, q, q - FRAME])])
    with pytest.raises(LoadError, match=r"delivery stalled: subscribers got \[100, 100, 100, 99\] of 400"):
        wait(script, queue=True, stall=0.2)
    # A plain subscriber that misses one, while the other got all.
    script = Script([(0.0, [PER_SUB, PER_SUB - FRAME])])
    with pytest.raises(LoadError, match="delivery stalled"):
        wait(script, queue=False, stall=0.2)


def test_bytes_that_are_not_frames_or_pings_are_reported() -> None:
    q = 100 * FRAME
    script = Script([(0.0, [q + FRAME, q, q, q])])      # a message delivered twice
    with pytest.raises(LoadError, match="expected a total of"):
        wait(script, queue=True)
    script = Script([(0.0, [q + 3, q, q, q])])          # 3 stray bytes: never settles
    with pytest.raises(LoadError, match="expected a total of"):
        wait(script, queue=True, stall=0.2)


def test_a_subscriber_closed_before_the_end_is_reported() -> None:
    q = 100 * FRAME
    script = Script([(0.0, [q, q, q, q - FRAME])])
    script.closed[3] = "EOF after 14751 bytes"
    with pytest.raises(LoadError, match="closed early"):
        wait(script, queue=True)
