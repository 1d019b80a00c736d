"""
~300 messages through the exec handler (tests/support/exec_job.py, prefetch 20):
exit 75 (TEMPFAIL, recovers or exhausts), 65 (DATAERR, non-retryable), a
SIGSEGV crash, stderr kept as evidence, handler-reported error codes, hangs
killed at the timeout (whole process group), malformed bodies. Every message
is accounted for and no job process outlives the test.
"""
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dlqtest  # noqa: E402
from dlqtest import Msg, dlq, envelope, note, success  # noqa: E402


def signal_is_segv(v):
    return str(v).upper() in ("11", "SEGV", "SIGSEGV")


def build(seed=2):
    rnd = random.Random(seed)
    msgs, expected = [], {}

    def add(mid, stub, outcome, headers=None, **props):
        msgs.append(Msg(envelope(mid, stub=stub), key=mid, headers=headers, **props))
        expected[mid] = outcome

    for i in range(150):
        add("ok-%d" % i, None, success(0))
    for i in range(60):
        k = 1 + i % 2
        add("tf-%d-%d" % (k, i), {"op": "exit", "code": 75, "times": k}, success(k))
    for i in range(15):
        add("ex-%d" % i, {"op": "exit", "code": 75},
            dlq("RETRY_EXHAUSTED", "PERSISTENT", 4, {"exit_code": 75}))
    for i in range(25):
        add("data-%d" % i, {"op": "exit", "code": 65},
            dlq("DATAERR", "NON_RETRYABLE", 1, {"exit_code": 65}),
            headers={"x-tenant": "acme"} if i % 5 == 0 else None)
    for i in range(10):
        add("segv-%d" % i, {"op": "signal", "sig": "SEGV"},
            dlq("UNKNOWN_ERROR", "PERSISTENT", 1, {"signal": signal_is_segv}))
    for i in range(15):
        text = "fatal: disk on fire (job %d)" % i
        add("stderr-%d" % i, {"op": "stderr", "text": text, "code": 65},
            dlq("DATAERR", "NON_RETRYABLE", 1, {"exit_code": 65, "_contains": text}))
    for i in range(10):
        add("code-%d" % i, {"op": "error_code", "error_code": "LEDGER_LOCKED",
                            "error_class": "NON_RETRYABLE", "code": 1},
            dlq("LEDGER_LOCKED", "NON_RETRYABLE", 1))
    for i in range(5):
        add("hang-%d" % i, {"op": "hang"}, dlq("RETRY_EXHAUSTED", "PERSISTENT", 4))
    for i in range(10):
        label = "raw-%d" % i
        msgs.append(Msg(b'{"message_id":"raw-%d","payload":[%d]}' % (i, i), key=label))
        expected[label] = "invalid"
    rnd.shuffle(msgs)
    return msgs, expected


class ExecWorkload(dlqtest.DlqdTestCase):
    def test_exec_workload(self):
        c = self.ctx
        cmd = c.exec_command()
        c.write_config(handler="exec", command=cmd, prefetch=20, timeout="2s")
        d = c.start_dlqd()

        msgs, expected = build()
        n_raw = sum(1 for v in expected.values() if v == "invalid")
        note("publishing %d messages to the exec handler" % len(msgs))
        c.broker.publish(c.q, msgs)
        real = {k: v for k, v in expected.items() if v != "invalid"}
        c.wait_settled(real, lambda: dlqtest.exec_successes(c.exec_log), n_raw=n_raw, timeout=120)

        report, copies = self.assertAllAccounted(msgs, expected, dlqtest.exec_successes(c.exec_log))

        # The environment the contract promises reached the job.
        recs = dlqtest.read_json_lines(c.exec_log)
        self.assertTrue(recs, "exec_job.py wrote no log at %s" % c.exec_log)
        bad = [r for r in recs if r.get("message_id") not in expected]
        self.assertFalse(bad, "exec jobs saw unknown DLQD_MESSAGE_ID: %s" % bad[:5])

        # Timed-out jobs were killed with their process group.
        time.sleep(0.5)
        left = dlqtest.procs_with_env("DLQD_TEST_LOG", c.exec_log)
        self.assertFalse(left, "exec job processes still running after their timeout: %s" % left)
        self.assertTrue([e for e in d.events("retry") if e.get("error_code") == "UPSTREAM_TIMEOUT"],
                        "no retry event with UPSTREAM_TIMEOUT for the hanging jobs")

        self.assertStopsCleanly(d)


if __name__ == "__main__":
    dlqtest.main(need_stub=False)
