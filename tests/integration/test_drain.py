"""
SIGTERM drain (design.md, "systemd"): stop consuming, let in-flight messages
finish and their acks land within drain_timeout, hand the rest back, exit 0.
  1. slow handler (500 ms), prefetch 20, drain_timeout 10s: exit 0 soon after
     the in-flight requests finish, no request started after SIGTERM, every
     finished message acked (the rest still in the queue, nothing lost);
  2. drain_timeout 4s < handler time 30s: exit 0 within drain_timeout + 2 s,
     the unfinished messages are back in the queue.
Both run with a NOTIFY_SOCKET the test owns (as under systemd): the notify
sequence is READY=1 ... STOPPING=1, and from SIGTERM on dlqd keeps sending
EXTEND_TIMEOUT_USEC= so that systemd's stop timeout cannot fire before
drain_timeout has run (each extension reaches past the drain deadline and
the next one comes before it lapses).
"""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dlqtest  # noqa: E402
from dlqtest import Msg, envelope, note, scaled  # noqa: E402


class Drain(dlqtest.DlqdTestCase):
    def setUp(self):
        super().setUp()
        self.addCleanup(dlqtest.close_notify_sockets, self.ctx)

    def assertNotifyDrain(self, d, t_sig, drain_s):
        ns = d.notify
        self.assertEqual(ns.sequence(), ["READY=1", "STOPPING=1"])
        ext = [(t, int(v)) for t, _, v in ns.items("EXTEND_TIMEOUT_USEC")]
        note("EXTEND_TIMEOUT_USEC after SIGTERM: %s" %
             " ".join("+%.1fs:%.1fs" % (t - t_sig, v / 1e6) for t, v in ext))
        self.assertTrue(ext, "no EXTEND_TIMEOUT_USEC= during the drain")
        stopping = ns.items("STOPPING")[0][0]
        self.assertGreaterEqual(ext[0][0], stopping, "EXTEND_TIMEOUT_USEC= before STOPPING=1")
        deadline = t_sig + drain_s
        for (t, v), nxt in zip(ext, ext[1:] + [None]):
            self.assertGreater(t + v / 1e6, deadline, "an extension ends before drain_timeout")
            if nxt is not None:
                self.assertLess(nxt[0], t + v / 1e6, "an extension lapsed before the next")

    def test_drain_completes_in_flight(self):
        c = self.ctx
        c.start_stub()
        c.write_config(prefetch=20, timeout="5s", drain_timeout="10s")
        d = dlqtest.start_service_dlqd(c)
        n = 100
        c.broker.publish(c.q, [Msg(envelope("dr-%d" % i, stub={"op": "sleep", "ms": 500}), key="dr-%d" % i)
                               for i in range(n)])
        c.wait_until(lambda: len(c.stub.records()) >= 30, 30, "30 answers before SIGTERM", interval=0.02)
        time.sleep(0.2)  # land in the middle of a batch
        t_sig = time.time()
        t_sig_mono = time.monotonic()
        d.signal(signal.SIGTERM)
        rc = d.wait_exit(scaled(12))
        t_exit = time.time()
        self.assertIsNotNone(rc, "dlqd still running 12s after SIGTERM (drain_timeout 10s)")
        self.assertEqual(rc, 0, "dlqd exit status %s after SIGTERM" % rc)
        note("exited %.2fs after SIGTERM" % (t_exit - t_sig))

        recs = c.stub.records()
        self.assertTrue(all("t" in r for r in recs), "the stub log has no \"t\" field")
        after = [r for r in recs if float(r["t"]) > t_sig]
        note("%d requests answered after SIGTERM" % len(after))
        self.assertLessEqual(len(after), 20, "more than prefetch answered after SIGTERM")
        late = [r for r in after if float(r["t"]) > t_sig + 0.5 + 0.3]
        self.assertFalse(late, "requests started after SIGTERM: %s" % late[:5])
        self.assertTrue(all(int(r["status"]) == 200 for r in after), "in-flight requests failed: %s" % after)
        self.assertLess(t_exit - t_sig, scaled(5), "the drain took %.1fs for 500 ms requests" % (t_exit - t_sig))

        # Every finished message was acked; the rest is still queued.
        done = set(c.stub.successes())
        time.sleep(0.5)
        left = c.broker.depth(c.q)
        self.assertEqual(left, n - len(done),
                         "%d succeeded, %d back in %s: expected %d (lost or unacked)" %
                         (len(done), left, c.q, n - len(done)))
        self.assertTrue(d.events("drain-start"), "no drain-start event")
        self.assertTrue(d.events("drain-done"), "no drain-done event")
        self.assertNotifyDrain(d, t_sig_mono, 10)

    def test_drain_timeout_hands_back(self):
        c = self.ctx
        c.start_stub()
        c.write_config(prefetch=5, timeout="60s", drain_timeout="4s")
        d = dlqtest.start_service_dlqd(c)
        n = 10
        c.broker.publish(c.q, [Msg(envelope("dt-%d" % i, stub={"op": "sleep", "ms": 30000}), key="dt-%d" % i)
                               for i in range(n)])
        c.wait_until(lambda: c.broker.depth(c.q) == n - 5, 20, "dlqd to take 5 messages")
        time.sleep(0.3)
        t_sig = time.monotonic()
        d.signal(signal.SIGTERM)
        rc = d.wait_exit(scaled(10))
        took = time.monotonic() - t_sig
        finished = c.stub.successes()
        self.assertIsNotNone(rc, "dlqd still running 10s after SIGTERM (drain_timeout 4s)")
        self.assertEqual(rc, 0, "dlqd exit status %s after SIGTERM" % rc)
        self.assertGreaterEqual(took, 4 - 0.1, "exit %.1fs before drain_timeout 4s" % took)
        self.assertLess(took, 4 + scaled(2), "exit took %.1fs with drain_timeout 4s" % took)
        self.assertTrue(d.events("drain-timeout"), "no drain-timeout event")
        self.assertNotifyDrain(d, t_sig, 4)
        note("exited %.2fs after SIGTERM" % took)
        c.wait_until(lambda: c.broker.depth(c.q) == n, 10,
                     "all %d messages back in %s (unfinished ones handed back)" % (n, c.q),
                     check_alive=False)
        self.assertEqual(finished, {}, "a 30 s request finished before dlqd exited?")


if __name__ == "__main__":
    dlqtest.main()
