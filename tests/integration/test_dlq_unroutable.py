"""
DLQ publish failure: with <q>.dlq deleted (or unbound from <q>.dlx), a
NON_RETRYABLE message's DLQ copy is unroutable. dlqd must not ack it: the
message stays on the main queue (ready or unacked), dlq-publish-failed is
logged, and once the operator restores q.dlq the messages arrive there.
Other messages keep flowing meanwhile.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dlqtest  # noqa: E402
from dlqtest import Msg, dlq, envelope, note, success  # noqa: E402

# Held messages stay unacked and so count against prefetch (20): keep room
# for the good ones to flow meanwhile.
N_BAD = 10
N_OK = 20


class DlqUnroutable(dlqtest.DlqdTestCase):
    def scenario(self, how):
        c = self.ctx
        c.start_stub()
        c.write_config(prefetch=20, timeout="5s")
        d = c.start_dlqd()

        if how == "delete":
            c.broker.delete_queue(c.dlq)
            self.assertFalse(c.broker.exists(c.dlq))
        else:
            c.broker.unbind(c.dlq, c.dlx, "#")

        msgs, expected = [], {}
        for i in range(N_BAD):
            mid = "bad-%d" % i
            msgs.append(Msg(envelope(mid, stub={"op": "fail", "status": 400}), key=mid))
            expected[mid] = dlq("INVALID_PAYLOAD", "NON_RETRYABLE", 1)
        for i in range(N_OK):
            mid = "ok-%d" % i
            msgs.append(Msg(envelope(mid), key=mid))
            expected[mid] = success(0)
        c.broker.publish(c.q, msgs)

        d.wait_event("dlq-publish-failed", 1, timeout=20)
        ok_ids = {k for k, v in expected.items() if v[0] == "success"}
        c.wait_until(lambda: ok_ids <= set(c.stub.successes()), 20, "the good messages to succeed")

        # The failed ones stay on the main queue, none acked, none dropped.
        samples = []
        for _ in range(4):
            n = c.backlog().get(c.q, 0)
            samples.append(n)
            time.sleep(0.5)
        note("messages held on %s while the DLQ is unroutable: %s" % (c.q, samples))
        self.assertTrue(all(n == N_BAD for n in samples),
                        "expected %d messages held on the main queue, saw %s" % (N_BAD, samples))
        if how == "unbind":
            self.assertEqual(c.broker.depth(c.dlq), 0, "unroutable copies reached the DLQ")
        d.assert_alive("while the DLQ is unroutable")
        text = c.metrics()
        self.assertRegex(text, r"(?m)^dlqd_dlq_publish_failures_total(\{[^}]*\})? [1-9]",
                         "dlqd_dlq_publish_failures_total not counting")

        # The operator repairs the topology; the held messages go to the DLQ.
        if how == "delete":
            c.broker.declare_queue(c.dlq)
        c.broker.bind(c.dlq, c.dlx, "#")
        c.wait_settled(expected, c.stub.successes, timeout=60)

        report, copies = self.assertAllAccounted(msgs, expected)
        # Published again after several refusals, each copy still says when
        # it was dead-lettered once: the header and the body agree.
        for g in copies:
            self.assertEqual(g.header("x-dlqd-dead-lettered-at"), g.json()["dead_lettered_at"])
        self.assertStopsCleanly(d)

    def test_dlq_deleted(self):
        self.scenario("delete")

    def test_dlq_unbound(self):
        self.scenario("unbind")


if __name__ == "__main__":
    dlqtest.main()
