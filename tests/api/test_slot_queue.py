"""Waiters for a slot are served in order across every process (``app.services.slots``), and the heavy lane
serves shorter work first (``app.services.compute``).

Before the queue, the waiters of the process that freed a slot were woken at once and always beat the waiters of
the other workers (which poll), so with ``--workers 2`` one worker ran both passes while the other idled."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from app.services.compute import MAX_QUEUE_HANDICAP_S, QUEUE_S_PER_GMAC, ComputeSlots, queue_handicap
from app.services.slots import RANK_EVERY_S, TICKET_FORMAT, SlotPool, ticket_units

REPO = Path(__file__).resolve().parents[2]
#: time for every waiter to have looked at the queue after the last one joined
RANKED_S = 3 * RANK_EVERY_S


def wait_for_waiters(pool: SlotPool, count: int, timeout: float = 5.0) -> None:
    """Until ``count`` threads wait in ``pool`` (this process's waiters)."""
    deadline = time.monotonic() + timeout
    while len(pool._local_queue) < count:
        assert time.monotonic() < deadline, f"{count} waiters never queued"
        time.sleep(0.005)


def wait_for_tickets(pool: SlotPool, count: int, timeout: float = 5.0) -> None:
    """Until ``count`` tickets are in ``pool``'s queue directory (waiters of any process that are among the first
    of their process)."""
    assert pool.queue is not None
    deadline = time.monotonic() + timeout
    while len([n for n in pool.queue.iterdir() if not n.name.startswith(".")]) < count:
        assert time.monotonic() < deadline, f"{count} tickets never appeared"
        time.sleep(0.005)


def take_in_thread(pool: SlotPool, order: list[str], name: str, priority: float | None = None,
                   hold_s: float = 0.02) -> threading.Thread:
    def run() -> None:
        held = pool.take(1, wait_s=10, priority=priority)
        assert held is not None
        order.append(name)
        time.sleep(hold_s)
        pool.release(held)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.parametrize("shared", [True, False], ids=["lock files", "one process only"])
def test_waiters_take_the_slot_in_the_order_they_arrived(tmp_path, shared):
    pool = SlotPool(tmp_path if shared else None, "compute", 1)
    held = pool.take(1, wait_s=1)
    order: list[str] = []
    threads = []
    for i in range(5):
        threads.append(take_in_thread(pool, order, f"w{i}"))
        wait_for_waiters(pool, i + 1)  # each arrives after the one before
    pool.release(held)
    for thread in threads:
        thread.join(10)
    assert order == [f"w{i}" for i in range(5)]


def test_priority_goes_before_arrival(tmp_path):
    pool = SlotPool(tmp_path, "compute", 1)
    held = pool.take(1, wait_s=1)
    order: list[str] = []
    now = time.monotonic()
    threads = [take_in_thread(pool, order, "late", priority=now + 5)]
    wait_for_waiters(pool, 1)
    threads.append(take_in_thread(pool, order, "early", priority=now))
    wait_for_waiters(pool, 2)
    time.sleep(RANKED_S)
    pool.release(held)
    for thread in threads:
        thread.join(10)
    assert order == ["early", "late"]


def test_a_newcomer_never_passes_a_waiter(tmp_path):
    """A slot that frees while someone waits goes to the waiter, not to a request that arrives at that moment."""
    pool = SlotPool(tmp_path, "compute", 1)
    held = pool.take(1, wait_s=1)
    order: list[str] = []
    waiter = take_in_thread(pool, order, "waiter", hold_s=0.2)
    wait_for_waiters(pool, 1)
    pool.release(held)
    newcomer = take_in_thread(pool, order, "newcomer")
    waiter.join(10)
    newcomer.join(10)
    assert order == ["waiter", "newcomer"]


def test_the_other_workers_waiter_goes_first_when_it_came_first(tmp_path):
    """Two workers: the first waiter is in worker B; worker A frees the slot and also has a waiter, which its
    release wakes at once. B's waiter still takes the slot (within milliseconds)."""
    worker_a, worker_b = SlotPool(tmp_path, "compute", 1), SlotPool(tmp_path, "compute", 1)
    held = worker_a.take(1, wait_s=1)
    order: list[str] = []
    first = take_in_thread(worker_b, order, "B, first")
    wait_for_tickets(worker_a, 1)
    second = take_in_thread(worker_a, order, "A, second")
    wait_for_tickets(worker_a, 2)  # each is the first of its process: both hold a ticket
    released = time.monotonic()
    worker_a.release(held)
    first.join(10)
    second.join(10)
    assert order == ["B, first", "A, second"]
    assert time.monotonic() - released < 1


def test_a_waiter_in_another_process_keeps_its_place(tmp_path):
    pool = SlotPool(tmp_path, "compute", 1)
    held = pool.take(1, wait_s=1)
    other = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from pathlib import Path
        from app.services.slots import SlotPool
        held = SlotPool(Path({str(tmp_path)!r}), "compute", 1).take(1, wait_s=20)
        print("took" if held else "none", time.monotonic(), flush=True)
        time.sleep(0.3)
        """)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        wait_for_tickets(pool, 1, timeout=20)
        took: list[float] = []

        def mine() -> None:
            again = pool.take(1, wait_s=10)
            took.append(time.monotonic())
            pool.release(again)

        thread = threading.Thread(target=mine)
        thread.start()
        wait_for_tickets(pool, 2)  # the first waiter of each process holds a ticket
        pool.release(held)
        word, when = other.stdout.readline().split()
        thread.join(10)
        assert word == "took" and len(took) == 1
        assert float(when) < took[0]  # the other process took the slot first: it came first
    finally:
        other.kill()
        other.wait()


def test_a_big_request_at_the_head_is_not_overtaken_by_small_ones(tmp_path):
    """The decode budget takes several units at once: eight one-unit requests that queue after a three-unit one
    must not take the units one by one before it."""
    pool = SlotPool(tmp_path, "decode", 4)
    held = pool.take(4, wait_s=1)
    order: list[str] = []

    def take(name: str, n: int) -> threading.Thread:
        def run() -> None:
            got = pool.take(n, wait_s=10)
            assert got is not None
            order.append(name)
            time.sleep(0.02)
            pool.release(got)

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    threads = [take("big", 3)]
    wait_for_waiters(pool, 1)
    for i in range(8):
        threads.append(take(f"small{i}", 1))
        wait_for_waiters(pool, i + 2)
    time.sleep(RANKED_S)
    pool.release(held)
    for thread in threads:
        thread.join(10)
    # behind a request for several units nobody else tries: else each small one would take a unit as the last
    # was freed, and the big one would never find three free at once (it went last, after 2 s)
    assert order[0] == "big" and sorted(order[1:]) == [f"small{i}" for i in range(8)]


def test_ticket_names_sort_as_the_waiters_do():
    """Equal priorities: the names must sort by pid and number as numbers (9 before 10), as the local queue does."""
    places = [(5, 42, 9), (5, 42, 10), (5, 7, 100), (4, 99_999, 1)]
    names = [TICKET_FORMAT.format(key=k, pid=p, seq=s, n=1) for k, p, s in places]
    assert sorted(names) == [names[i] for i in sorted(range(4), key=lambda i: places[i])]
    assert ticket_units(TICKET_FORMAT.format(key=1, pid=2, seq=3, n=7)) == 7


def test_the_ticket_of_a_dead_waiter_is_skipped_and_removed(tmp_path):
    """A worker killed while it waited leaves its ticket unlocked: it must not block the queue."""
    pool = SlotPool(tmp_path, "compute", 1)
    dead = pool.queue / TICKET_FORMAT.format(key=0, pid=999_999, seq=0, n=1)  # first in line, but nobody holds it
    dead.touch()
    start = time.monotonic()
    held = pool.take(1, wait_s=5)
    assert held is not None and time.monotonic() - start < 0.5
    pool.release(held)
    blocker = pool.take(1, wait_s=1)
    dead.touch()
    order: list[str] = []
    thread = take_in_thread(pool, order, "live")
    wait_for_waiters(pool, 1)
    pool.release(blocker)
    thread.join(10)
    assert order == ["live"]
    assert not dead.exists()


def test_a_waiter_that_gives_up_leaves_the_queue(tmp_path):
    pool = SlotPool(tmp_path, "compute", 1)
    held = pool.take(1, wait_s=1)
    assert pool.take(1, wait_s=0.1) is None
    assert [n for n in pool.queue.iterdir()] == []
    pool.release(held)


# --- shorter work first ------------------------------------------------------------------------------------

def test_the_handicap_never_outlasts_half_the_allowed_wait(tmp_path):
    """With CNN_VIS_COMPUTE_WAIT_S under the handicap, work of unknown size would time out behind later work."""
    compute = ComputeSlots(tmp_path, slots=1, wait_s=4)
    assert served_in_order(compute, [("unknown", None, 2.2), ("short", 0.1, 0.0)]) == ["unknown", "short"]


def test_the_handicap_grows_with_the_work_and_is_bounded():
    assert queue_handicap(0.0) == 0.0
    assert queue_handicap(0.4) == pytest.approx(0.4 * QUEUE_S_PER_GMAC)
    assert queue_handicap(0.4) < queue_handicap(0.8)
    assert queue_handicap(1e6) == MAX_QUEUE_HANDICAP_S
    assert queue_handicap(None) == MAX_QUEUE_HANDICAP_S  # work of unknown size: the most


def served_in_order(compute: ComputeSlots, works: list[tuple[str, float, float]]) -> list[str]:
    """With the heavy slot held, queue ``(name, gmacs, pause)`` in turn (``pause``: seconds after it queued),
    then free the slot: the order in which they computed."""
    order: list[str] = []

    def work(name: str, gmacs: float) -> None:
        with compute(gmacs=gmacs):
            order.append(name)

    blocker = compute.heavy.take(1, wait_s=1)
    threads = []
    for count, (name, gmacs, pause) in enumerate(works, start=1):
        threads.append(threading.Thread(target=work, args=(name, gmacs)))
        threads[-1].start()
        wait_for_waiters(compute.heavy, count)
        time.sleep(pause)
    time.sleep(RANKED_S)
    compute.heavy.release(blocker)
    for thread in threads:
        thread.join(10)
    return order


def test_a_prediction_goes_before_a_grad_cam_that_queued_first(tmp_path):
    """EfficientNet-Lite0: a prediction is 0.385 GMACs, a Grad-CAM about twice that (a forward and a backward
    pass). The Grad-CAM queues first; when the slot frees, the prediction takes it."""
    compute = ComputeSlots(tmp_path, slots=1, wait_s=120)  # the default wait: handicaps of 11.5 s and 23 s
    assert served_in_order(compute, [("grad-cam", 0.77, 0.0), ("predict", 0.385, 0.0)]) == ["predict", "grad-cam"]


def test_long_work_is_served_once_its_handicap_has_passed(tmp_path, monkeypatch):
    """No starvation: work that queued more than its handicap before a shorter one still goes first."""
    monkeypatch.setattr("app.services.compute.QUEUE_S_PER_GMAC", 0.5)  # a 0.8 GMAC handicap of 0.4 s
    compute = ComputeSlots(tmp_path, slots=1, wait_s=10)
    # the short one (above the light lane's 0.05 GMACs) comes 0.6 s after the long one: past its handicap
    assert served_in_order(compute, [("long", 0.8, 0.6), ("short", 0.1, 0.0)]) == ["long", "short"]
