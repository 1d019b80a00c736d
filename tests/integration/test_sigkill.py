"""
SIGKILL mid-run: ~2000 messages (slow successes and transient failures that
recover), dlqd is killed twice while busy and started again. Nothing may be
lost: every message succeeds at the downstream (duplicates are allowed and
counted: delivery is at least once).
"""
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dlqtest  # noqa: E402
from dlqtest import note  # noqa: E402


def build(seed=3):
    return dlqtest.busy_workload(seed, 1600, 400, 2)


class SigKill(dlqtest.DlqdTestCase):
    def test_sigkill_mid_run(self):
        c = self.ctx
        c.start_stub()
        c.write_config(prefetch=20, timeout="5s")
        d = c.start_dlqd()

        msgs, expected = build()
        c.broker.publish(c.q, msgs)
        note("published %d messages" % len(msgs))

        for frac in (0.3, 0.65):
            mark = int(len(msgs) * frac)
            c.wait_until(lambda: len(c.stub.records()) >= mark, 60,
                         "%d downstream answers before the SIGKILL" % mark, interval=0.02)
            d.signal(signal.SIGKILL)
            rc = d.wait_exit(10)
            self.assertEqual(rc, -signal.SIGKILL, "dlqd did not die of SIGKILL (status %s)" % rc)
            note("SIGKILLed dlqd after %d answers; backlog %s" % (len(c.stub.records()),
                                                                  sum(c.backlog().values())))
            d.start()
            c.wait_ready(d)

        c.wait_settled(expected, c.stub.successes, timeout=90)
        copies = c.broker.get_all(c.dlq)
        report = dlqtest.account(msgs, expected, c.stub.successes(), copies)
        note("duplicates after two SIGKILLs: %d" % report.duplicates)
        self.assertAccounted(report)
        self.assertEqual(copies, [], "messages in the DLQ: %s" % copies[:3])
        rc = d.stop()
        self.assertEqual(rc, 0, "dlqd exit status %s after SIGTERM" % rc)


if __name__ == "__main__":
    dlqtest.main()
