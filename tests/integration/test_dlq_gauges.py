"""
The DLQ gauges (dlqd_dlq_messages, dlqd_dlq_oldest_message_age_seconds) read
from the broker by the probe on the publisher link: after many probes the DLQ
keeps its exact order and count, and the gauges equal the truth (depth, and
the age of the head from x-dlqd-dead-lettered-at, or else the timestamp
property). A missing DLQ, a lost publisher connection, a quorum DLQ and
`dlq_poll_interval = 0` are covered too.
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dlqtest  # noqa: E402
from dlqtest import Msg, note  # noqa: E402
from test_metrics import metrics_extra, parse  # noqa: E402


def rfc3339(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def dead(i, at, **props):
    """A DLQ message as dlqd writes it (header), dead-lettered at time at."""
    return Msg(b'{"message_id":"dlq-%d"}' % i, key="dlq-%d" % i,
               headers={"x-dlqd-dead-lettered-at": rfc3339(at), "x-dlqd-error-code": "X"},
               **props)


class DlqGauges(dlqtest.DlqdTestCase):
    def start(self, poll="100ms", **kw):
        c = self.ctx
        c.write_config(extra=metrics_extra(poll), **kw)
        return c.start_dlqd()

    def gauges(self):
        s = parse(self.ctx.metrics())
        return s.value("dlqd_dlq_messages"), s.value("dlqd_dlq_oldest_message_age_seconds")

    def wait_gauges(self, depth, age=None, tol=2.0, timeout=20):
        """Until the gauges show depth and (if given) an age within tol of
        age(), which is evaluated at the time of the check."""
        def ok():
            d, a = self.gauges()
            if d != depth:
                return False
            if age is None:
                return True
            return a is not None and abs(a - age()) <= tol
        self.ctx.wait_until(ok, timeout, "DLQ gauges at depth %s" % depth)
        return self.gauges()

    def test_order_count_and_truth(self):
        c = self.ctx
        d = self.start(poll="100ms")
        now = time.time()
        t_head = now - 3600
        msgs = [dead(i, t_head + i) for i in range(40)]
        c.broker.publish(c.dlq, msgs)
        depth, age = self.wait_gauges(40, lambda: time.time() - t_head)
        note("depth %s, oldest %.1f s" % (depth, age))

        # Many probes later (100 ms apart), new messages at the tail: the head
        # and its age stay, the depth follows.
        time.sleep(dlqtest.scaled(3))
        more = [dead(100 + i, now) for i in range(5)]
        c.broker.publish(c.dlq, more)
        self.wait_gauges(45, lambda: time.time() - t_head)
        time.sleep(dlqtest.scaled(2))
        self.assertStopsCleanly(d)

        got = c.broker.get_all(c.dlq)
        self.assertEqual([g.body for g in got], [m.body for m in msgs + more],
                         "the DLQ lost its order or a message after the probes")
        # The probed head only gained the redelivered flag (docs/metrics.md).
        self.assertTrue(got[0].redelivered)
        self.assertEqual(got[0].headers.get("x-dlqd-dead-lettered-at"), rfc3339(t_head))

    def test_age_sources_and_empty(self):
        c = self.ctx
        self.start(poll="200ms")
        # Empty DLQ: depth 0, age 0.
        self.wait_gauges(0, lambda: 0, tol=0)
        # A foreign message with only the AMQP timestamp property.
        t = int(time.time()) - 600
        c.broker.publish(c.dlq, [Msg(b"foreign", key="f", timestamp=t)])
        self.wait_gauges(1, lambda: time.time() - t)
        # A head with no time at all: depth known, age left out.
        c.broker.purge(c.dlq)
        c.broker.publish(c.dlq, [Msg(b"no time", key="n"), dead(1, time.time() - 50)])
        depth, age = self.wait_gauges(2)
        time.sleep(0.5)
        depth, age = self.gauges()
        self.assertEqual(depth, 2)
        self.assertIsNone(age, "an age for a head without a timestamp")
        c.broker.purge(c.dlq)
        self.wait_gauges(0, lambda: 0, tol=0)

    def test_missing_dlq_and_lost_link(self):
        c = self.ctx
        d = self.start(poll="200ms")
        c.broker.publish(c.dlq, [dead(i, time.time() - 30) for i in range(3)])
        self.wait_gauges(3)
        # Delete the DLQ: only the probe notices; the publisher link stays.
        c.broker.delete_queue(c.dlq)
        c.wait_until(lambda: self.gauges() == (None, None), 10, "DLQ gauges gone")
        self.assertTrue(any("cannot probe" in e.message for e in d.events()),
                        "no 'cannot probe' warning")
        self.assertFalse(d.events("publisher-lost"), "a missing DLQ broke the publisher link")
        # Back again: the probe reopens its channel.
        c.broker.declare_queue(c.dlq)
        c.broker.bind(c.dlq, c.dlx, "#")
        msgs = [dead(i, time.time() - 20) for i in range(4)]
        c.broker.publish(c.dlq, msgs)
        self.wait_gauges(4)

        # Kill the publisher connection (probes in flight are dropped, the
        # broker requeues what they held): the gauges come back, the DLQ is whole.
        conns = dlqtest.broker_sh("ctl", "list_connections", "pid", "client_properties", "-q")
        pub = [line.split()[0] for line in conns.splitlines()
               if "dlqd %s publisher" % c.q in line]
        self.assertEqual(len(pub), 1, "publisher connection not found: %s" % conns)
        dlqtest.broker_sh("ctl", "close_connection", pub[0], "test: drop the publisher")
        d.wait_event("publisher-lost")
        d.wait_event("publisher-connected", count=2)
        self.wait_gauges(4)
        self.assertStopsCleanly(d)
        self.assertEqual([g.body for g in c.broker.get_all(c.dlq)], [m.body for m in msgs])

    def test_dlq_reader_left_alone(self):
        """While another client consumes the DLQ (dlqctl list), the probe
        neither takes the head from under it nor reports its unacked
        messages as gone: the gauges keep their last reading."""
        c = self.ctx
        self.start(poll="100ms")
        t_head = time.time() - 300
        msgs = [dead(i, t_head + i) for i in range(10)]
        c.broker.publish(c.dlq, msgs)
        self.wait_gauges(10, lambda: time.time() - t_head)
        conn = dlqtest.pika.BlockingConnection(c.broker._params())
        self.addCleanup(lambda: conn.is_open and conn.close())
        ch = conn.channel()
        seen = []
        ch.basic_consume(c.dlq, lambda ch_, m, p, body: seen.append(body), auto_ack=False)
        more = [dead(100 + i, time.time()) for i in range(3)]
        deadline = time.monotonic() + dlqtest.scaled(3)
        while time.monotonic() < deadline:
            conn.process_data_events(time_limit=0.2)
            if len(seen) == 10 and not more[0] in msgs:
                c.broker.publish(c.dlq, more)
                msgs += more
            depth, age = self.gauges()
            self.assertEqual(depth, 10, "gauge changed while dlqctl reads the DLQ")
            # Kept from the last poll before the reader: frozen, not reset.
            self.assertIsNotNone(age)
            self.assertGreater(age, 295)
            self.assertLessEqual(age, time.time() - t_head + 1)
        self.assertEqual(seen, [m.body for m in msgs], "the reader saw the DLQ out of order")
        conn.close()  # its deliveries go back
        self.wait_gauges(13, lambda: time.time() - t_head)

    def test_quorum_depth_only(self):
        c = self.ctx
        d = self.start(poll="100ms", queue_type="quorum")
        msgs = [dead(i, time.time() - 100) for i in range(5)]
        c.broker.publish(c.dlq, msgs)
        self.wait_gauges(5)
        time.sleep(dlqtest.scaled(2))
        depth, age = self.gauges()
        self.assertEqual(depth, 5)
        self.assertIsNone(age, "a quorum DLQ's age needs a requeue, which counts deliveries")
        self.assertStopsCleanly(d)
        got = c.broker.get_all(c.dlq)
        self.assertEqual([g.body for g in got], [m.body for m in msgs])
        # Never delivered by the probe: no delivery count, no redelivery.
        self.assertFalse(any(g.redelivered for g in got))
        self.assertEqual([g.headers.get("x-delivery-count", 0) for g in got], [0] * len(got))

    def test_poll_off(self):
        c = self.ctx
        self.start(poll="0")
        c.broker.publish(c.dlq, [dead(0, time.time())])
        time.sleep(dlqtest.scaled(2.5))
        self.assertEqual(self.gauges(), (None, None))
        s = parse(c.metrics())
        self.assertEqual(s.type.get("dlqd_dlq_messages"), "gauge")
        self.assertEqual(c.broker.get_all(c.dlq, requeue=True)[0].redelivered, False)

    def test_poll_interval_checked(self):
        c = self.ctx
        path = c.write_config(extra=metrics_extra("2h"), name="bad.conf")
        p = subprocess.run([dlqtest.DLQD_BIN, "--check-config", "--config", path],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        self.assertEqual(p.returncode, 1)
        self.assertIn("value '2h' for 'dlq_poll_interval' in [metrics] is out of range "
                      "(allowed: 0 (off) to 1h)", p.stdout.decode())


if __name__ == "__main__":
    dlqtest.main()
