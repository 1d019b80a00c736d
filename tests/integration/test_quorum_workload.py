"""
Quorum topology end to end: with `queue_type = quorum` the main queue, the
DLQ and every delay lane are quorum queues (lanes dead-letter at least once).
A workload with successes, retries that recover, retries that run out and
non-retryable failures is fully accounted for, and a SIGKILL in the middle
loses nothing.
"""
import os
import random
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dlqtest  # noqa: E402
from dlqtest import Msg, dlq, envelope, success  # noqa: E402


class QuorumWorkload(dlqtest.DlqdTestCase):
    def test_quorum_workload(self):
        c = self.ctx
        c.start_stub()
        c.write_config(prefetch=30, timeout="5s", queue_type="quorum")
        d = c.start_dlqd()

        msgs, expected = [], {}

        def add(mid, stub, outcome):
            msgs.append(Msg(envelope(mid, stub=stub), key=mid))
            expected[mid] = outcome

        for i in range(200):
            add("ok-%d" % i, None, success(0))
        for i in range(60):
            times = 1 + i % 2
            add("flaky-%d" % i, {"op": "fail", "status": 503, "times": times}, success(times))
        for i in range(20):
            add("down-%d" % i, {"op": "fail", "status": 503},
                dlq("RETRY_EXHAUSTED", "PERSISTENT", 4))
        for i in range(20):
            add("bad-%d" % i, {"op": "fail", "status": 400}, dlq("INVALID_PAYLOAD", "NON_RETRYABLE", 1))
        random.shuffle(msgs)
        c.broker.publish(c.q, msgs)

        # Kill it while retries sit in quorum lanes, then start it again.
        d.wait_event("retry", 20, timeout=30)
        d.signal(signal.SIGKILL)
        self.assertEqual(d.wait_exit(10), -signal.SIGKILL, "dlqd did not die of SIGKILL")
        d.start()
        c.wait_ready(d)
        c.wait_settled(expected, c.stub.successes, timeout=120)

        for row in c.our_queues(("name", "type")):
            self.assertEqual(row["type"], "quorum", "%s is not a quorum queue" % row["name"])
        report, copies = self.assertAllAccounted(msgs, expected)
        self.assertStopsCleanly(d)


if __name__ == "__main__":
    dlqtest.main()
