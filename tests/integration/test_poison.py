"""
Poison guard ([pipeline] max_redeliveries, design.md "Protecting the
downstream and the pipeline"), on classic and quorum main queues.

One message ("poison-1") makes the downstream hang, and each time the
downstream sees it the test SIGKILLs dlqd and starts it again, as systemd's
Restart= would: a message that kills dlqd. With max_redeliveries = 3 the
handler sees it exactly 3 times; its 3rd redelivery goes to the DLQ as
POISON_MESSAGE / NON_RETRYABLE without being run, its bytes unchanged, the
count as evidence. Every other message succeeds; nothing is lost.

- prefetch 1: dlqd holds nothing but the poison message at each crash, so
  the others must all succeed.
- prefetch 10: dlqd also holds neighbours at each crash, and the broker
  hands them back with the poison message; each is counted like it
  (docs/config.md). Every message either succeeded or is in the DLQ as
  POISON_MESSAGE, poison-1 among them; the neighbours are reported.
"""
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dlqtest  # noqa: E402
from dlqtest import Msg, envelope, note, success  # noqa: E402

POISON = "poison-1"
MAX_REDELIVERIES = 3


class Poison(dlqtest.DlqdTestCase):
    def seen(self, mid):
        """How often the downstream received mid (the stub's body log)."""
        return sum(1 for r in dlqtest.read_json_lines(self.bodies) if r.get("message_id") == mid)

    def run_poison(self, queue_type, prefetch, n_ok):
        c = self.ctx
        self.bodies = c.path("bodies.log")
        c.start_stub(args=["--body-log", self.bodies])
        c.write_config(prefetch=prefetch, timeout="60s", queue_type=queue_type,
                       extra={"pipeline": {"max_redeliveries": MAX_REDELIVERIES}})
        d = c.start_dlqd()

        poison = Msg(envelope(POISON, stub={"op": "hang"}), key=POISON,
                     headers={"tenant": "acme"}, message_id=POISON)
        msgs, expected = [], {}
        for i in range(n_ok):
            mid = "ok-%d" % i
            msgs.append(Msg(envelope(mid, stub={"op": "sleep", "ms": 5 + i % 10}), key=mid))
            expected[mid] = success(0)
        # The poison message first, then the rest behind it.
        c.broker.publish(c.q, [poison])
        c.broker.publish(c.q, msgs)
        note("published %s + %d messages to a %s queue (prefetch %d)" %
             (POISON, n_ok, queue_type, prefetch))

        # Each time the downstream sees it: SIGKILL, then start again.
        for k in range(1, MAX_REDELIVERIES + 1):
            c.wait_until(lambda: self.seen(POISON) >= k, 60,
                         "the downstream to see %s for the %d. time" % (POISON, k),
                         interval=0.01, check_alive=False)
            d.signal(signal.SIGKILL)
            self.assertEqual(d.wait_exit(10), -signal.SIGKILL, "dlqd did not die of SIGKILL")
            note("SIGKILLed dlqd: the downstream saw %s %d time(s), %d answers so far" %
                 (POISON, k, len(c.stub.records())))
            d.start()
            c.wait_ready(d)

        # The 3rd redelivery goes to the DLQ without a handler run.
        d.wait_event("poison", timeout=60)
        c.wait_settled({}, c.stub.successes, n_raw=1, timeout=120)
        # With prefetch 1 nothing else is held, so no crash can fall between
        # a redelivery copy's confirm and the ack of its original (which
        # would leave two copies: at least once, as everywhere).
        strict = prefetch == 1
        seen = self.seen(POISON)
        note("the downstream saw %s %d time(s)" % (POISON, seen))
        if strict:
            self.assertEqual(seen, MAX_REDELIVERIES,
                             "the handler must see the poison message max_redeliveries times")
        else:
            self.assertGreaterEqual(seen, MAX_REDELIVERIES)
        d.assert_alive("after the poison message")

        copies = c.broker.get_all(c.dlq)
        mine = [g for g in copies if g.body == poison.body]
        others = [g for g in copies if g.body != poison.body]
        self.assertEqual(len(mine) if strict else min(len(mine), 1), 1,
                         "copies of %s in the DLQ: %s" % (POISON, copies[:3]))
        g = mine[0]
        h = g.headers
        self.assertEqual(g.routing_key, "NON_RETRYABLE.POISON_MESSAGE")
        self.assertEqual(h.get("x-dlqd-error-code"), "POISON_MESSAGE")
        self.assertEqual(h.get("x-dlqd-error-class"), "NON_RETRYABLE")
        self.assertEqual(h.get("x-dlqd-attempt"), 1)
        self.assertEqual(h.get("x-dlqd-redeliveries"), MAX_REDELIVERIES)
        self.assertTrue(h.get("x-dlqd-dead-lettered-at"))
        detail = h.get("x-dlqd-error-detail") or ""
        self.assertIn("redelivered %d times" % MAX_REDELIVERIES, detail)
        self.assertIn("x-delivery-count" if queue_type == "quorum" else "x-dlqd-redeliveries",
                      detail)
        self.assertEqual(h.get("tenant"), "acme", "the producer's header was not kept")
        self.assertEqual(g.props.message_id, POISON)
        self.assertEqual(g.props.delivery_mode, 2)
        note("poison copy: %s" % detail)

        # The last run counted it and said so in its log.
        m = c.metrics()
        if strict:
            self.assertIn("\ndlqd_poison_messages_total 1\n", m)
        self.assertIn('dlqd_messages_dead_lettered_total{error_code="POISON_MESSAGE",'
                      'error_class="NON_RETRYABLE"} ', m)
        last = len(d.runs) - 1
        ev = d.events("poison", run=last)
        self.assertGreaterEqual(len(ev), 1, ev)
        if strict:
            self.assertEqual(len(ev), 1, ev)
        self.assertEqual(ev[0].get("error_code"), "POISON_MESSAGE")
        recounted = d.events("redelivered")
        if queue_type == "classic":
            # The count travelled in the message: republished twice.
            self.assertGreaterEqual(len(recounted), MAX_REDELIVERIES - 1)
        else:
            self.assertEqual(recounted, [], "quorum counts with x-delivery-count")

        # Everything else: succeeded, or (a neighbour held at every crash)
        # dead-lettered as POISON_MESSAGE too; nothing lost.
        neighbours = [x for x in others if x.header("x-dlqd-error-code") == "POISON_MESSAGE"]
        for x in neighbours:
            self.assertEqual(x.header("x-dlqd-redeliveries"), MAX_REDELIVERIES)
        by_body = {x.body: x for x in msgs}
        held = {by_body[x.body].key for x in neighbours if x.body in by_body}
        self.assertEqual(len(held), len(neighbours), "unknown POISON_MESSAGE copies")
        note("neighbours dead-lettered with it: %d %s" % (len(held), sorted(held)[:10]))
        exp = {k: v for k, v in expected.items() if k not in held}
        report = dlqtest.account([x for x in msgs if x.key not in held], exp,
                                 c.stub.successes(),
                                 [x for x in others if x not in neighbours])
        self.assertAccounted(report)
        self.assertStopsCleanly(d)
        return held

    def test_classic(self):
        held = self.run_poison("classic", prefetch=1, n_ok=150)
        self.assertEqual(held, set(), "prefetch 1: no neighbour may be dead-lettered")

    def test_quorum(self):
        held = self.run_poison("quorum", prefetch=1, n_ok=150)
        self.assertEqual(held, set(), "prefetch 1: no neighbour may be dead-lettered")

    def test_classic_prefetch(self):
        self.run_poison("classic", prefetch=10, n_ok=400)

    def test_quorum_prefetch(self):
        self.run_poison("quorum", prefetch=10, n_ok=400)


if __name__ == "__main__":
    dlqtest.main()
