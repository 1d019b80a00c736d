"""
Resource alarm: while RabbitMQ blocks publishing (a memory alarm, raised here
by lowering the watermark), dlqd must publish nothing, hold the messages whose
retry or DLQ copy it cannot publish (unacked, never lost), and keep acking the
jobs that succeed. Once the alarm clears the held messages flow on.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dlqtest  # noqa: E402
from dlqtest import Msg, dlq, envelope, note, success  # noqa: E402

N_OK = 20
N_BAD = 10
N_RETRY = 5  # retry copies are held too, and flow through their lane after


def watermark(value):
    dlqtest.broker_sh("ctl", "set_vm_memory_high_watermark", value)


def memory_alarm():
    return "resource_limit,memory" in dlqtest.broker_sh("ctl", "eval", "rabbit_alarm:get_alarms().")


class ResourceAlarm(dlqtest.DlqdTestCase):
    def tearDown(self):
        watermark("0.4")  # never leave the shared node in alarm
        super().tearDown()

    def test_memory_alarm(self):
        c = self.ctx
        # Every answer takes 8 s, so the whole batch is in flight when the
        # alarm goes up: raising it takes two rabbitmqctl runs, which need
        # several seconds on a loaded machine (3 s was seen to be too short).
        c.start_stub(delay_ms=8000)
        c.write_config(prefetch=50, timeout="20s")
        d = c.start_dlqd()

        msgs, expected = [], {}
        for i in range(N_OK):
            msgs.append(Msg(envelope("ok-%d" % i), key="ok-%d" % i))
            expected["ok-%d" % i] = success(0)
        for i in range(N_BAD):
            mid = "bad-%d" % i
            msgs.append(Msg(envelope(mid, stub={"op": "fail", "status": 400}), key=mid))
            expected[mid] = dlq("INVALID_PAYLOAD", "NON_RETRYABLE", 1)
        for i in range(N_RETRY):
            mid = "retry-%d" % i
            msgs.append(Msg(envelope(mid, stub={"op": "fail", "status": 503, "times": 1}),
                            key=mid))
            expected[mid] = success(1)
        c.broker.publish(c.q, msgs)
        c.wait_until(lambda: c.backlog().get(c.q) == N_OK + N_BAD + N_RETRY and
                     c.broker.depth(c.q) == 0, 10, "every message in flight")

        watermark("0.000001")
        c.wait_until(memory_alarm, 10, "the memory alarm", check_alive=False)
        # RabbitMQ says it blocks a connection only once that connection
        # publishes: the first DLQ copy.
        d.wait_event("broker-blocked", 1, timeout=20)
        # The successes are acked although the broker blocks publishing.
        ok_ids = {"ok-%d" % i for i in range(N_OK)}
        c.wait_until(lambda: ok_ids <= set(c.stub.successes()), 20, "the good messages to succeed")
        c.wait_until(lambda: c.backlog().get(c.q) == N_BAD + N_RETRY, 20,
                     "the successes acked during the alarm")
        note("held during the alarm: %s" % c.backlog())
        self.assertLessEqual(c.broker.depth(c.dlq), 1,
                             "DLQ copies went through during the alarm")
        d.assert_alive("during the alarm")

        watermark("0.4")
        c.wait_until(lambda: not memory_alarm(), 10, "the alarm to clear", check_alive=False)
        d.wait_event("broker-unblocked", 1, timeout=20)
        c.wait_settled(expected, c.stub.successes, timeout=60)
        # A lane declaration on the blocked connection would have stalled the
        # loop for the RPC timeout and then failed the whole link.
        self.assertEqual(d.events("publisher-lost"), [], "the publisher link failed")
        report, copies = self.assertAllAccounted(msgs, expected)
        self.assertEqual(d.stop(), 0, "dlqd exit status after SIGTERM")


if __name__ == "__main__":
    dlqtest.main()
