"""
SIGHUP reload: a changed taxonomy takes effect (HTTP 418 moves from the "4xx"
rule, INVALID_PAYLOAD, to its own rule, TEAPOT); an invalid taxonomy or config
is rejected with FILE:LINE diagnostics (event reload-failed), the running
configuration is kept and messages keep flowing.
"""
import json
import os
import re
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dlqtest  # noqa: E402
from dlqtest import Msg, dlq, envelope, note, success  # noqa: E402


class Reload(dlqtest.DlqdTestCase):
    def replace_file(self, path, text):
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, path)

    def batch(self, tag, n_teapot, n_ok, outcome):
        msgs, expected = [], {}
        for i in range(n_teapot):
            mid = "%s-tea-%d" % (tag, i)
            msgs.append(Msg(envelope(mid, stub={"op": "fail", "status": 418}), key=mid))
            expected[mid] = outcome
        for i in range(n_ok):
            mid = "%s-ok-%d" % (tag, i)
            msgs.append(Msg(envelope(mid), key=mid))
            expected[mid] = success(0)
        self.ctx.broker.publish(self.ctx.q, msgs)
        self.ctx.wait_settled(expected, self.ctx.stub.successes, timeout=30)
        copies = self.ctx.broker.get_all(self.ctx.dlq)
        report = dlqtest.account(msgs, expected, self.ctx.stub.successes(), copies)
        self.assertAccounted(report)

    def assertDiagAfter(self, d, event_index, path):
        """The log, from the reload-failed event on, names path:LINE:."""
        text = d.text()
        lines = text.splitlines()
        start = max(i for i, l in enumerate(lines) if "reload-failed" in l) - 5
        tail = "\n".join(lines[max(0, start):])
        self.assertRegex(tail, re.escape(path) + r":\d+:",
                         "reload-failed without a %s:LINE: diagnostic:\n%s" % (path, tail[-2000:]))

    def test_reload(self):
        c = self.ctx
        c.start_stub()
        tax_path = c.write_taxonomy()
        conf_path = c.write_config(prefetch=10, timeout="5s")
        d = c.start_dlqd()

        old = dlq("INVALID_PAYLOAD", "NON_RETRYABLE", 1)
        new = dlq("TEAPOT", "NON_RETRYABLE", 1)
        self.batch("a", 10, 5, old)

        # 1. A changed taxonomy takes effect.
        tax = dlqtest.test_taxonomy(rules_before=[
            {"when": {"http_status": [418]}, "error_code": "TEAPOT", "class": "NON_RETRYABLE"}])
        self.replace_file(tax_path, json.dumps(tax, indent=2) + "\n")
        d.signal(signal.SIGHUP)
        d.wait_event("reload", 1, timeout=10)
        d.assert_alive("after a good reload")
        self.batch("b", 10, 5, new)

        # 2. An invalid taxonomy is refused; the old table stays.
        self.replace_file(tax_path, '{"version": 1,\n  "policies": {,}\n}\n')
        d.signal(signal.SIGHUP)
        d.wait_event("reload-failed", 1, timeout=10)
        self.assertDiagAfter(d, 1, tax_path)
        d.assert_alive("after a failed reload")
        self.batch("c", 10, 5, new)

        # 3. An invalid config is refused too.
        self.replace_file(tax_path, json.dumps(tax, indent=2) + "\n")
        with open(conf_path) as f:
            good_conf = f.read()
        self.replace_file(conf_path, good_conf.replace("[handler]\n", "[handler]\nno_such_key = 1\n"))
        d.signal(signal.SIGHUP)
        d.wait_event("reload-failed", 2, timeout=10)
        self.assertDiagAfter(d, 2, conf_path)
        d.assert_alive("after a failed config reload")
        self.batch("d", 5, 5, new)

        # 4. Fixed again: reload succeeds.
        self.replace_file(conf_path, good_conf)
        d.signal(signal.SIGHUP)
        d.wait_event("reload", 2, timeout=10)
        self.batch("e", 5, 5, new)
        note("reload events: %d ok, %d failed" % (len(d.events("reload")), len(d.events("reload-failed"))))

        rc = d.stop()
        self.assertEqual(rc, 0, "dlqd exit status %s after SIGTERM" % rc)

    def test_reload_keeps_restart_keys(self):
        """A reload that changes [pipeline] queue says it needs a restart and
        changes nothing of the topology: copies still go to this pipeline's
        lanes and DLQ, never to another queue's exchanges."""
        c = self.ctx
        c.start_stub()
        conf_path = c.write_config(prefetch=10, timeout="5s")
        d = c.start_dlqd()
        with open(conf_path) as f:
            good = f.read()
        self.assertIn("queue = %s\n" % c.q, good)
        self.replace_file(conf_path, good.replace("queue = %s\n" % c.q,
                                                  "queue = %s-other\n" % c.q))
        d.signal(signal.SIGHUP)
        d.wait_event("reload", 1, timeout=10)
        self.assertIn("[pipeline] queue changed; it takes effect at the next restart", d.text())
        self.batch("f", 10, 5, dlq("INVALID_PAYLOAD", "NON_RETRYABLE", 1))
        self.assertFalse(c.broker.exchange_exists(c.q + "-other.dlx"))
        self.assertEqual(d.stop(), 0)

    def test_reload_under_load(self):
        """SIGHUPs while messages are in flight (one of them replaces the
        handler, whose calls in flight finish on the old one): nothing is
        dropped, and each reload is RELOADING=1 (with MONOTONIC_USEC=) then
        READY=1 on the NOTIFY_SOCKET."""
        c = self.ctx
        self.addCleanup(dlqtest.close_notify_sockets, c)
        c.start_stub()
        conf_path = c.write_config(prefetch=20, timeout="5s")
        d = dlqtest.start_service_dlqd(c)
        # Smaller under ASan, where each message costs more (same shape).
        n_slow, n_tr = (150, 40) if not dlqtest.IS_ASAN else (80, 20)
        msgs, expected = dlqtest.busy_workload(7, n_slow, n_tr, 2, n_bad=10)
        c.broker.publish(c.q, msgs)
        with open(conf_path) as f:
            good = f.read()
        for i in range(4):
            c.wait_until(lambda: len(c.stub.records()) >= (i + 1) * 30, 30,
                         "%d answers before reload %d" % ((i + 1) * 30, i + 1), interval=0.02)
            if i == 1:  # a new handler (new timeout) while calls are in flight
                self.replace_file(conf_path, good.replace("\ntimeout = 5s", "\ntimeout = 6s"))
            d.signal(signal.SIGHUP)
            d.wait_event("reload", i + 1, timeout=10)
        c.wait_settled(expected, c.stub.successes, timeout=60)
        report = dlqtest.account(msgs, expected, c.stub.successes(), c.broker.get_all(c.dlq))
        self.assertAccounted(report)
        self.assertEqual(d.stop(), 0)
        seq = d.notify.sequence()
        note("notify sequence: %s" % " ".join(seq))
        self.assertEqual(seq, ["READY=1"] + ["RELOADING=1", "READY=1"] * 4 + ["STOPPING=1"])
        self.assertEqual(len(d.notify.items("MONOTONIC_USEC")), 4)


if __name__ == "__main__":
    dlqtest.main()
