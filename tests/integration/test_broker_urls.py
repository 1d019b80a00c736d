"""
Several broker URLs ([broker] url lists the nodes of one cluster): dlqd and
dlqctl connect to the first node that answers, dlqd moves on to the next node
when a connection fails, and STATUS=, the journal and dlqd_broker_node_info
name the node in use. The other "nodes" are loopback ports nothing listens
on (the real 3-node cluster is test_cluster.py's); every message is counted.
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dlqtest  # noqa: E402
from dlqtest import AMQP_PORT, AMQP_URL, note  # noqa: E402
from dlqctl_util import run_ctl  # noqa: E402

LIVE = "127.0.0.1:%d" % AMQP_PORT


def dead_url():
    """A loopback node that refuses connections, and its host:port."""
    port = dlqtest.free_port()
    return "amqp://guest:guest@127.0.0.1:%d/%%2f" % port, "127.0.0.1:%d" % port


def node_info(text):
    return re.findall(r'^dlqd_broker_node_info\{node="([^"]*)"\} 1$', text, re.M)


class BrokerUrls(dlqtest.DlqdTestCase):
    def run_workload(self, c, n=200):
        msgs, expected = dlqtest.busy_workload(7, n, n // 4, 2)
        c.broker.publish(c.q, msgs)
        c.wait_settled(expected, c.stub.successes, timeout=60)
        report = dlqtest.account(msgs, expected, c.stub.successes(), c.broker.get_all(c.dlq))
        self.assertAccounted(report)
        return report

    def test_first_node_down(self):
        """The first node refuses: dlqd connects to the second and says so."""
        c = self.ctx
        c.start_stub()
        dead, dead_ep = dead_url()
        c.write_config(prefetch=20, timeout="5s",
                       extra={"broker": {"url": "%s  %s" % (dead, AMQP_URL)}})
        d = dlqtest.start_service_dlqd(c)
        d.notify.wait(c, "READY", "1")
        d.wait_event("broker-connected", 1, timeout=20)

        failed = d.events("broker-connect-failed")
        self.assertTrue(failed, "no broker-connect-failed event for the dead first node")
        self.assertIn(dead_ep, failed[0].message)
        connected = d.events("broker-connected")
        self.assertIn(LIVE, connected[0].message)
        self.assertNotIn(dead_ep, connected[0].message)
        # The failed node is retried at once, not after a backoff pause.
        note("first node refused, connected to %s: %s" % (LIVE, connected[0].message))

        status = d.notify.wait(c, "STATUS", pred=lambda v: v.startswith("Consuming"))
        self.assertIn(" on %s:" % LIVE, status[-1][2])
        self.assertEqual(node_info(c.metrics()), [LIVE])

        self.run_workload(c)

        # dlqctl reads the same config: the first node that answers.
        rc, out, err = run_ctl(c.path("dlqd.conf"), "stats")
        self.assertEqual(rc, 0, err)
        self.assertStopsCleanly(d)

    def test_no_node_answers(self):
        """Every node refuses: dlqctl names each node; dlqd keeps trying all
        of them (STATUS= says which it waits for) and connects once one is
        listed that answers (a reload cannot change url, so a restart)."""
        c = self.ctx
        c.start_stub()
        (d1, ep1), (d2, ep2) = dead_url(), dead_url()
        c.write_config(prefetch=20, timeout="5s",
                       extra={"broker": {"url": "%s %s" % (d1, d2)}})
        rc, out, err = run_ctl(c.path("dlqd.conf"), "stats")
        self.assertNotEqual(rc, 0)
        self.assertIn(ep1, err)
        self.assertIn(ep2, err)
        self.assertLess(err.index(ep1), err.index(ep2), "nodes in the listed order")
        note("dlqctl with no node answering: %s" % err.strip())

        d = dlqtest.start_service_dlqd(c, wait_ready=False)
        # Both nodes tried, several rounds.
        d.wait_event("broker-connect-failed", 4, timeout=30)
        eps = [ep1 if ep1 in e.message else ep2 if ep2 in e.message else None
               for e in d.events("broker-connect-failed")]
        self.assertIn(ep1, eps)
        self.assertIn(ep2, eps)
        self.assertEqual(eps[:2], [ep1, ep2], "the first round goes in the listed order")
        status = d.notify.wait(c, "STATUS", pred=lambda v: v.startswith("Waiting"))
        self.assertRegex(status[-1][2], r"Waiting for the broker at 127\.0\.0\.1:\d+")
        self.assertFalse(node_info(c.metrics()), "a node named while none is connected")
        self.assertStopsCleanly(d)

    def test_moves_on_after_a_loss(self):
        """Connected to the first node, which then goes away: dlqd tries the
        next node first, then comes back to the first; nothing is lost."""
        c = self.ctx
        c.start_stub()
        dead, dead_ep = dead_url()
        c.write_config(prefetch=20, timeout="5s",
                       extra={"broker": {"url": "%s %s" % (AMQP_URL, dead)}})
        d = dlqtest.start_service_dlqd(c)
        d.wait_event("broker-connected", 1, timeout=20)
        self.assertFalse(d.events("broker-connect-failed"), "the first node answers")
        self.assertEqual(node_info(c.metrics()), [LIVE])

        msgs, expected = dlqtest.busy_workload(8, 600, 150, 2)
        c.broker.publish(c.q, msgs)
        c.wait_until(lambda: len(c.stub.records()) >= 100, 60, "100 answers before the loss")
        c.broker.close()
        dlqtest.broker_sh("restart", timeout=180)

        d.wait_event("broker-lost", 1, timeout=30)
        d.wait_event("broker-connected", 2, timeout=90)
        failed = [e for e in d.events("broker-connect-failed") if dead_ep in e.message]
        self.assertTrue(failed, "after the loss dlqd did not try the next node")
        c.wait_settled(expected, c.stub.successes, timeout=120)
        report = dlqtest.account(msgs, expected, c.stub.successes(), c.broker.get_all(c.dlq))
        note("after the loss: %d connect failures on the next node, %d duplicates" %
             (len(failed), report.duplicates))
        self.assertAccounted(report)
        self.assertEqual(node_info(c.metrics()), [LIVE])
        self.assertStopsCleanly(d)


if __name__ == "__main__":
    dlqtest.main()
