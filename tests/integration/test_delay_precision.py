"""
Retry delay precision under a burst: 300 messages fail once with 503 at the
same moment (policy: initial 1s, multiplier 2, jitter [0.1, 0.3]). For each
message, the time between its first and second request at the downstream
(the stub log's "t") must match the delay_ms dlqd logged for its retry
within 5% + 100 ms, and the burst must keep its jitter (delays spread over
most of [1.1 s, 1.3 s], not collapsed onto one lane).
"""
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dlqtest  # noqa: E402
from dlqtest import Msg, envelope, note, success  # noqa: E402

N = 300


class DelayPrecision(dlqtest.DlqdTestCase):
    def test_delay_precision(self):
        c = self.ctx
        c.start_stub()
        c.write_taxonomy(dlqtest.test_taxonomy(fast={"initial": "1s", "multiplier": 2, "max": "2s",
                                                      "jitter": [0.1, 0.3], "max_attempt": 3}))
        c.write_config(prefetch=100, timeout="5s")
        d = c.start_dlqd()

        msgs = [Msg(envelope("dp-%d" % i, stub={"op": "fail", "status": 503, "times": 1}), key="dp-%d" % i)
                for i in range(N)]
        expected = {m.key: success(1) for m in msgs}
        c.broker.publish(c.q, msgs)
        c.wait_settled(expected, c.stub.successes, timeout=60)
        report = dlqtest.account(msgs, expected, c.stub.successes(), c.broker.get_all(c.dlq))
        self.assertAccounted(report)

        times = {}
        for r in c.stub.records():
            if "t" not in r:
                self.fail("the stub log has no \"t\" field: %s" % r)
            times.setdefault(r["message_id"], {}).setdefault(dlqtest._int(r["attempt"]), float(r["t"]))
        delays = {}
        for e in d.events("retry"):
            if e.get("message_id") in expected and e.get("message_id") not in delays:
                delays[e.get("message_id")] = int(e.get("delay_ms")) / 1000.0
        missing = [m for m in expected if m not in delays]
        self.assertFalse(missing, "no retry event (with delay_ms) for %d messages, e.g. %s" %
                         (len(missing), missing[:5]))

        bad, errs = [], []
        for mid, want in delays.items():
            t = times.get(mid, {})
            if 0 not in t or 1 not in t:
                bad.append("%s: attempts seen %s" % (mid, sorted(t)))
                continue
            gap = t[1] - t[0]
            err = gap - want
            errs.append(err)
            if abs(err) > 0.05 * want + 0.100:
                bad.append("%s: delay_ms=%d but came back after %.3fs (off by %+.0f ms)" %
                           (mid, want * 1000, gap, err * 1000))
        if errs:
            note("gap - delay: min %+.0f ms, mean %+.0f ms, max %+.0f ms over %d messages" %
                 (min(errs) * 1000, statistics.mean(errs) * 1000, max(errs) * 1000, len(errs)))
        self.assertFalse(bad, "%d retries outside 5%% + 100 ms:\n  %s" % (len(bad), "\n  ".join(bad[:20])))

        vals = sorted(delays.values())
        sd = statistics.pstdev(vals)
        note("logged delays: min %.3fs max %.3fs stddev %.3fs" % (vals[0], vals[-1], sd))
        self.assertGreaterEqual(vals[0], 1.1 - 0.002, "a delay below initial*(1+0.1)")
        self.assertLessEqual(vals[-1], 1.3 + 0.002, "a delay above initial*(1+0.3)")
        self.assertGreater(sd, 0.03, "jitter lost: stddev %.3fs" % sd)
        self.assertLess(vals[0], 1.14, "delays do not reach the low end of the jitter range")
        self.assertGreater(vals[-1], 1.26, "delays do not reach the high end of the jitter range")
        d.assert_alive("at the end")


if __name__ == "__main__":
    dlqtest.main()
