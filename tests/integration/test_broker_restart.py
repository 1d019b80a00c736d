"""
Broker restart mid-run: while ~1500 messages are being worked on, the RabbitMQ
node is stopped and started again (tests/broker.sh restart; durable queues and
persistent messages survive). dlqd must notice (broker-lost), reconnect by
itself (broker-connected again), keep running, and lose nothing.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dlqtest  # noqa: E402
from dlqtest import note  # noqa: E402


def build(seed=4):
    return dlqtest.busy_workload(seed, 1200, 250, 3, 50)


class BrokerRestart(dlqtest.DlqdTestCase):
    def test_broker_restart(self):
        c = self.ctx
        c.start_stub()
        c.write_config(prefetch=20, timeout="5s")
        d = c.start_dlqd()
        d.wait_event("broker-connected", 1, timeout=10)

        msgs, expected = build()
        c.broker.publish(c.q, msgs)
        note("published %d messages" % len(msgs))
        mark = len(msgs) // 4
        c.wait_until(lambda: len(c.stub.records()) >= mark, 60,
                     "%d downstream answers before the restart" % mark, interval=0.02)

        t0 = time.monotonic()
        c.broker.close()
        dlqtest.broker_sh("restart", timeout=180)
        note("broker restarted in %.1fs" % (time.monotonic() - t0))

        d.wait_event("broker-lost", 1, timeout=30)
        d.wait_event("broker-connected", 2, timeout=60)
        d.assert_alive("after the broker restart")
        c.wait_ready(d, timeout=30)

        c.wait_settled(expected, c.stub.successes, timeout=120)
        copies = c.broker.get_all(c.dlq)
        report = dlqtest.account(msgs, expected, c.stub.successes(), copies)
        note("duplicates after the broker restart: %d" % report.duplicates)
        self.assertAccounted(report)
        self.assertStopsCleanly(d)


if __name__ == "__main__":
    dlqtest.main()
