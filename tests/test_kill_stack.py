"""kill -9 of the whole stack at random moments mid-stream loses and duplicates nothing.

`twinstream up` runs as a user would start it, in its own process group with its
own state directory, broker and HTTP port (its consumer group must not meet the
session stack's). Items stream in — new ids, updates (same key, new bytes) and
tombstones — while the process group is SIGKILLed at a random moment; the next
`up` must converge to exactly the produced set minus the deleted, one entry per
id, each update carrying the newest vector. The broker is a separate service and
survives, as a real cluster would.
"""

import random
import threading
import time

import httpx

from tests.fixtures_stream import Stream, converged_problems, produce_ops
from tests.fixtures_up import UpProcess

# The second kill meets a stack that recovered from the first; a third repeated that case.
ROUNDS = 2
KILL_WINDOW_S = (0.5, 5.0)
CONVERGE_TIMEOUT_S = 180


def test_kill_9_of_the_whole_stack_converges_to_exactly_the_log(own_settings):
    rng = random.Random(int(time.time()))
    stream = Stream("kill")
    up = UpProcess(own_settings, 0)
    try:
        up.wait_ready()
        for number in range(ROUNDS):
            ops = stream.round(number, rng)
            producer = threading.Thread(target=produce_ops, args=(own_settings, ops))
            producer.start()
            time.sleep(rng.uniform(*KILL_WINDOW_S))
            up.kill()
            producer.join()
            up = UpProcess(own_settings, number + 1)
            up.wait_ready()
        with httpx.Client(base_url=f"http://127.0.0.1:{own_settings.http_port}", timeout=60) as api:
            deadline = time.monotonic() + CONVERGE_TIMEOUT_S
            while problems := converged_problems(api, stream):
                assert time.monotonic() < deadline, problems[:10]
                time.sleep(2)
    finally:
        if up.process.poll() is None:
            up.stop()
