"""
Channel errors: with <q>.dlx and <q>.retry deleted under a running dlqd, the
publish of a DLQ or retry copy makes the broker close the channel (404). dlqd
must not ack the original, must reconnect its publisher connection by
itself and declare what it publishes to, after which every message is
accounted for: succeeded downstream or in <q>.dlq, none lost.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dlqtest  # noqa: E402
from dlqtest import Msg, dlq, envelope, success  # noqa: E402


class ChannelError(dlqtest.DlqdTestCase):
    def test_exchanges_deleted(self):
        c = self.ctx
        c.start_stub()
        c.write_config(prefetch=20, timeout="5s")
        d = c.start_dlqd()

        c.broker.delete_exchange(c.dlx)
        c.broker.delete_exchange(c.q + ".retry")

        msgs, expected = [], {}
        for i in range(10):
            mid = "bad-%d" % i
            msgs.append(Msg(envelope(mid, stub={"op": "fail", "status": 400}), key=mid))
            expected[mid] = dlq("INVALID_PAYLOAD", "NON_RETRYABLE", 1)
        for i in range(10):
            mid = "flaky-%d" % i
            msgs.append(Msg(envelope(mid, stub={"op": "fail", "status": 503, "times": 1}), key=mid))
            expected[mid] = success(1)
        for i in range(20):
            mid = "ok-%d" % i
            msgs.append(Msg(envelope(mid), key=mid))
            expected[mid] = success(0)
        c.broker.publish(c.q, msgs)

        # The first refused publish costs the publisher connection; it
        # comes back by itself and declares what it needs.
        d.wait_event("publisher-lost", 1, timeout=20)
        d.wait_event("publisher-connected", 2, timeout=30)
        c.wait_settled(expected, c.stub.successes, timeout=60)

        self.assertTrue(c.broker.exists(c.dlq), "the DLQ is gone")
        report, copies = self.assertAllAccounted(msgs, expected)
        self.assertStopsCleanly(d)


if __name__ == "__main__":
    dlqtest.main()
