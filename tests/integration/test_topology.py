"""
Topology that dlqd declares with [pipeline] declare = true (design.md, "Topology"):
  q            durable main queue (classic or quorum)
  q.retry      direct exchange feeding the delay lanes
  q.retry.<ms> lanes: x-message-ttl=<ms>, dead-letter to "" / q
               (quorum: x-dead-letter-strategy=at-least-once, x-overflow=reject-publish)
  q.dlx        topic exchange
  q.dlq        durable, bound to q.dlx with '#'
and a restart re-declares all of it without a conflict.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dlqtest  # noqa: E402
from dlqtest import Msg, ctl_args, ctl_json, envelope, note  # noqa: E402


class Topology(dlqtest.DlqdTestCase):
    def inspect(self):
        c = self.ctx
        queues = {r["name"]: r for r in c.our_queues(("name", "type", "durable", "arguments", "messages"))}
        exchanges = {r["name"]: r for r in ctl_json("list_exchanges", "name", "type", "durable")
                     if r["name"] in (c.retry_x, c.dlx)}
        bindings = [r for r in ctl_json("list_bindings", "source_name", "destination_name",
                                        "destination_kind", "routing_key")
                    if r["source_name"] in (c.retry_x, c.dlx)]
        return queues, exchanges, bindings

    def scenario(self, queue_type):
        c = self.ctx
        c.start_stub()
        c.write_config(queue_type=queue_type, prefetch=10)
        d = c.start_dlqd()

        queues, exchanges, bindings = self.inspect()
        note("queues: %s" % sorted(queues))
        for name in (c.q, c.dlq):
            self.assertIn(name, queues, "queue %s not declared" % name)
            self.assertTrue(queues[name]["durable"], "%s not durable" % name)
            self.assertEqual(queues[name]["type"], queue_type, "%s has type %s" % (name, queues[name]["type"]))
        self.assertIn(c.retry_x, exchanges, "exchange %s not declared" % c.retry_x)
        self.assertEqual(exchanges[c.retry_x]["type"], "direct")
        self.assertTrue(exchanges[c.retry_x]["durable"])
        self.assertIn(c.dlx, exchanges, "exchange %s not declared" % c.dlx)
        self.assertEqual(exchanges[c.dlx]["type"], "topic")
        self.assertTrue(exchanges[c.dlx]["durable"])
        self.assertIn((c.dlx, c.dlq, "#"),
                      [(b["source_name"], b["destination_name"], b["routing_key"]) for b in bindings],
                      "%s not bound to %s with '#'" % (c.dlq, c.dlx))

        # Two retries with different delays make dlqd use (declare) lanes.
        msgs = [Msg(envelope("topo-1", stub={"op": "fail", "status": 503, "times": 1})),
                Msg(envelope("topo-2", stub={"op": "retry_after", "seconds": 1, "times": 1})),
                Msg(envelope("topo-3"))]
        c.broker.publish(c.q, msgs)
        expected = {"topo-1": dlqtest.success(1), "topo-2": dlqtest.success(1),
                    "topo-3": dlqtest.success(0)}
        c.wait_settled(expected, c.stub.successes, timeout=30)

        queues, exchanges, bindings = self.inspect()
        lanes = {n: q for n, q in queues.items() if c.is_lane(n)}
        self.assertTrue(lanes, "no delay lane %s.retry.<ms> declared; queues: %s" % (c.q, sorted(queues)))
        retries = {e.get("message_id"): e for e in d.events("retry")}
        for name, q in sorted(lanes.items()):
            ms = int(name.rsplit(".", 1)[1])
            args = ctl_args(q["arguments"])
            note("lane %s: type=%s args=%s" % (name, q["type"], args))
            self.assertTrue(q["durable"], "%s not durable" % name)
            self.assertEqual(args.get("x-message-ttl"), ms, "%s: x-message-ttl %r" % (name, args.get("x-message-ttl")))
            self.assertEqual(args.get("x-dead-letter-exchange"), "", "%s: x-dead-letter-exchange" % name)
            self.assertEqual(args.get("x-dead-letter-routing-key"), c.q, "%s: x-dead-letter-routing-key" % name)
            if queue_type == "quorum":
                self.assertEqual(q["type"], "quorum", "%s is %s" % (name, q["type"]))
                self.assertEqual(args.get("x-dead-letter-strategy"), "at-least-once", name)
                self.assertEqual(args.get("x-overflow"), "reject-publish", name)
            self.assertIn(name, [b["destination_name"] for b in bindings if b["source_name"] == c.retry_x],
                          "lane %s not bound to %s" % (name, c.retry_x))
        # The lanes used are the ones the retry events named.
        for mid in ("topo-1", "topo-2"):
            ev = retries.get(mid)
            self.assertIsNotNone(ev, "no retry event logged for %s" % mid)
            lane = "%s.retry.%s" % (c.q, ev.get("lane_ms"))
            self.assertIn(lane, lanes, "retry event of %s names lane %s, not declared" % (mid, lane))

        # A restart re-declares everything with the same arguments.
        rc = d.stop()
        self.assertEqual(rc, 0, "dlqd exit status %s after SIGTERM" % rc)
        d.start()
        c.wait_ready(d)
        c.broker.publish(c.q, [Msg(envelope("topo-4", stub={"op": "fail", "status": 503, "times": 1}))])
        c.wait_settled({"topo-4": dlqtest.success(1)}, c.stub.successes, timeout=30)
        d.assert_alive("after the restart")

    def test_classic(self):
        self.scenario("classic")

    def test_quorum(self):
        self.scenario("quorum")


if __name__ == "__main__":
    dlqtest.main()
