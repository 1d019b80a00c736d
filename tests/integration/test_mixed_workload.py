"""
A mixed workload of > 2000 messages through the http handler (prefetch 50):
successes, transient failures that recover, transient failures that exhaust,
4xx, 401/403 (escalation), downstream-reported error codes, Retry-After and
malformed bodies. Every message is accounted for; DLQ copies are checked
field by field (headers, properties, body, evidence, routing key).
"""
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dlqtest  # noqa: E402
from dlqtest import Msg, dlq, envelope, note, success  # noqa: E402


def http_status(n):
    return lambda v: str(v) == str(n)


def build(seed=1):
    rnd = random.Random(seed)
    msgs, expected = [], {}

    def add(mid, stub, outcome, headers=None, **props):
        msgs.append(Msg(envelope(mid, stub=stub), key=mid, headers=headers, **props))
        expected[mid] = outcome

    for i in range(1150):
        mid = "ok-%d" % i
        if i % 10 == 0:
            add(mid, None, success(0), headers={"x-tenant": "acme", "x-seq": i},
                content_type="application/json", correlation_id="corr-" + mid, app_id="it")
        else:
            add(mid, None, success(0))
    for i in range(300):
        k = 1 + i % 3
        add("tr-%d-%d" % (k, i), {"op": "fail", "status": 503, "times": k}, success(k))
    for i in range(80):
        add("ex-%d" % i, {"op": "fail", "status": 503},
            dlq("RETRY_EXHAUSTED", "PERSISTENT", 4,
                {"http_status": http_status(503), "_errors_min": 4}))
    for i in range(150):
        mid = "bad-%d" % i
        out = dlq("INVALID_PAYLOAD", "NON_RETRYABLE", 1, {"http_status": http_status(400)})
        if i % 3 == 0:
            add(mid, {"op": "fail", "status": 400}, out,
                headers={"x-tenant": "globex", "x-note": "keep me"},
                content_type="application/json", correlation_id="corr-" + mid, type="job.v1")
        else:
            add(mid, {"op": "fail", "status": 400}, out)
    for st in (401, 403):
        for i in range(40):
            add("auth-%d-%d" % (st, i), {"op": "fail", "status": st},
                dlq("AUTH_REVOKED", "NON_RETRYABLE", 1, {"http_status": http_status(st)}))
    for i in range(40):
        add("ledger-%d" % i, {"op": "error_code", "status": 500, "error_code": "LEDGER_LOCKED",
                              "error_class": "NON_RETRYABLE"},
            dlq("LEDGER_LOCKED", "NON_RETRYABLE", 1, {"http_status": http_status(500)}))
    for i in range(40):
        # A taxonomy rule on handler_code overrides the downstream's class.
        add("quota-%d" % i, {"op": "error_code", "status": 500, "error_code": "QUOTA_EXCEEDED",
                             "error_class": "TRANSIENT"},
            dlq("QUOTA_EXCEEDED", "NON_RETRYABLE", 1))
    for i in range(40):
        add("busy-%d" % i, {"op": "error_code", "status": 500, "error_code": "DOWNSTREAM_BUSY",
                            "error_class": "TRANSIENT", "times": 1}, success(1))
    for i in range(40):
        add("ra-%d" % i, {"op": "retry_after", "seconds": 1, "times": 1}, success(1))
    for i in range(40):
        # Unknown failure: the table's default sends it to the DLQ at once.
        add("unk-%d" % i, {"op": "fail", "status": 500},
            dlq("UNKNOWN_ERROR", "PERSISTENT", 1, {"http_status": http_status(500)}))

    def raw(label, body, headers=None, **props):
        msgs.append(Msg(body, key=label, headers=headers, **props))
        expected[label] = "invalid"

    for i in range(20):
        raw("notjson-%d" % i, b"this is not json %d {" % i)
        raw("noid-%d" % i, b'{"payload":{"n":%d},"trace_id":"t-noid-%d"}' % (i, i))
        raw("emptyid-%d" % i, b'{"message_id":"","payload":{"n":%d}}' % i)
        raw("arr-%d" % i, b'{"message_id":"arr-%d","payload":[1,2,3]}' % i)
        raw("str-%d" % i, b'{"message_id":"str-%d","payload":"hello"}' % i)
        raw("utf8-%d" % i, b'{"message_id":"utf8-%d","payload":{"s":"\xff\xfe\xc3"}}' % i,
            headers={"x-origin": "legacy"}, content_type="application/json",
            correlation_id="corr-utf8-%d" % i)
    rnd.shuffle(msgs)
    return msgs, expected


class MixedWorkload(dlqtest.DlqdTestCase):
    def test_mixed_workload(self):
        c = self.ctx
        c.start_stub()
        # The shipped circuit breaker and retry budget (protection=True).
        # This mix fails chosen messages forever (ex-*), so once the first
        # attempts are done its tail is all failing retries. The breaker
        # counts first attempts only, so that tail must not read as an
        # outage (when retries counted, it opened, each probe drew a failing
        # retry, and the pause doubled past the test's 90 s).
        c.write_config(prefetch=50, timeout="5s", protection=True)
        d = c.start_dlqd()

        msgs, expected = build()
        self.assertGreaterEqual(len(msgs), 2000)
        n_raw = sum(1 for v in expected.values() if v == "invalid")
        note("publishing %d messages (%d malformed)" % (len(msgs), n_raw))
        c.broker.publish(c.q, msgs)
        real = {k: v for k, v in expected.items() if v != "invalid"}
        c.wait_settled(real, c.stub.successes, n_raw=n_raw, timeout=90)

        report, copies = self.assertAllAccounted(msgs, expected)

        # 401/403: escalated.
        esc = d.events("escalation")
        note("%d escalation events" % len(esc))
        self.assertTrue(esc, "no escalation event logged for AUTH_REVOKED")
        others = [e for e in esc if e.get("message_id") and not e.get("message_id").startswith("auth-")]
        self.assertFalse(others, "escalation events for other messages: %s" % others[:5])

        # Retry-After: the delay honours the downstream's 1 s.
        retries = {}
        for e in d.events("retry"):
            retries.setdefault(e.get("message_id"), []).append(e)
        short = []
        for mid in (k for k in expected if k.startswith("ra-")):
            evs = retries.get(mid)
            if not evs:
                short.append("%s: no retry event" % mid)
            elif int(evs[0].get("delay_ms", 0)) < 1000:
                short.append("%s: delay_ms=%s" % (mid, evs[0].get("delay_ms")))
        self.assertFalse(short, "Retry-After not honoured: %s" % short[:10])
        recs = {}
        for r in c.stub.records():
            recs.setdefault(r.get("message_id"), {}).setdefault(dlqtest._int(r.get("attempt")), r.get("t"))
        gaps = [recs[m][1] - recs[m][0] for m in recs if m.startswith("ra-")
                and 0 in recs[m] and 1 in recs[m] and recs[m][0] is not None]
        if gaps:
            self.assertGreaterEqual(min(gaps), 0.95, "a Retry-After: 1 message came back after %.3fs" % min(gaps))

        # Retry events carry the contract's fields.
        ev = next(iter(retries.values()))[0]
        for k in ("message_id", "attempt", "error_code", "error_class", "delay_ms"):
            self.assertIn(k, ev.fields, "retry event lacks %s: %s" % (k, ev.raw))

        self.assertTrue(d.events("invalid-envelope"), "no invalid-envelope event logged")
        self.assertTrue(d.events("dead-letter"), "no dead-letter event logged")

        text = c.metrics()
        for name in ("dlqd_messages_consumed_total", "dlqd_messages_succeeded_total",
                     "dlqd_messages_dead_lettered_total", "dlqd_build_info"):
            self.assertIn(name, text, "metric %s missing from /metrics" % name)
        # About a fifth of the first attempts trip (503s), under the 0.5 share.
        self.assertIn("\ndlqd_breaker_opened_total 0\n", text,
                      "the breaker opened on a workload without an outage")
        self.assertFalse(d.events("breaker-open"), "breaker-open logged without an outage")

        self.assertStopsCleanly(d)


if __name__ == "__main__":
    dlqtest.main()
