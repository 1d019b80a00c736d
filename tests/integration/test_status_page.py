"""
The status page at / on the metrics port, rendered by a real headless
Chromium (Debian's chromium; --dump-dom after the page refreshed itself a
few times): the numbers it shows are the right ones.

- After the known workload: DLQ depth, oldest DLQ age, DLQ total, the
  non-retryable / retry-exhausted / other split, the top error codes and
  every total equal the workload and /metrics; at rest every rate is 0.
- Live rates: while messages trickle in, the page's rates equal the
  difference of the two /status.json samples it rendered last, divided by
  their server-time distance. Chromium's virtual time runs the page's
  2-second timer at once, so the samples go through a small proxy that
  holds each /status.json answer for a second of real time.
"""
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from html.parser import HTMLParser

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dlqtest  # noqa: E402
from dlqtest import Msg, dlq, envelope, note, success  # noqa: E402
from test_metrics import metrics_extra, parse, run_known_workload  # noqa: E402

CHROMIUM = "/usr/bin/chromium"


class Dom(HTMLParser):
    """Attributes and text of every element with an id, and the top-code rows."""

    def __init__(self):
        super().__init__()
        self.by_id, self.rows, self._open = {}, [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("class") == "top-code":
            self.rows.append(a)
        if "id" in a:
            a["text"] = ""
            self.by_id[a["id"]] = a
            self._open.append(a)
        else:
            self._open.append(None)

    def handle_endtag(self, tag):
        if self._open:
            self._open.pop()

    def handle_data(self, data):
        for a in reversed(self._open):
            if a is not None:
                a["text"] += data
                break

    def attr(self, id_, name):
        el = self.by_id.get(id_)
        if el is None:
            raise AssertionError("no element #%s on the page" % id_)
        return el.get(name)

    def num(self, id_, name):
        v = self.attr(id_, name)
        return None if v in (None, "") else float(v)


def render(ctx, url, budget_ms):
    """The DOM of url after budget_ms of (virtual) time in headless Chromium."""
    profile = os.path.join(ctx.dir, "chromium-%d" % time.monotonic_ns())
    os.makedirs(profile)
    argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--user-data-dir=" + profile,
            "--virtual-time-budget=%d" % budget_ms, "--dump-dom", url]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        out, err = p.communicate(timeout=dlqtest.scaled(90))
    except subprocess.TimeoutExpired:
        dlqtest.kill_session(p.pid)
        p.communicate()
        raise dlqtest.HarnessError("chromium did not finish rendering %s" % url)
    finally:
        dlqtest.kill_session(p.pid)
    if p.returncode != 0 or b"<html" not in out:
        raise dlqtest.HarnessError("chromium exited %d: %s" % (p.returncode, err[-2000:]))
    dom = Dom()
    dom.feed(out.decode())
    return dom


class SlowProxy:
    """Forwards GETs to dlqd's metrics port; holds /status.json answers for
    `delay` seconds (fetching them from dlqd at the end) and keeps them."""

    def __init__(self, target_port, delay):
        samples = self.samples = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path == "/status.json":
                    time.sleep(delay)
                try:
                    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (target_port, self.path),
                                                timeout=10) as r:
                        body, ctype, status = r.read(), r.headers["Content-Type"], r.status
                except urllib.error.HTTPError as e:
                    body, ctype, status = e.read(), e.headers["Content-Type"], e.code
                if self.path == "/status.json":
                    samples.append(json.loads(body))
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class StatusPage(dlqtest.DlqdTestCase):
    def test_page_shows_the_truth(self):
        c = self.ctx
        d, msgs, expected, counters, t0 = run_known_workload(self)
        dom = render(c, "http://127.0.0.1:%d/" % c.metrics_port, 7000)
        s = parse(c.metrics())

        self.assertGreaterEqual(dom.num("updated", "data-polls"), 2, "the page did not refresh")
        self.assertEqual(dom.attr("error", "text"), "")
        self.assertIn(c.q, dom.attr("queue", "text"))
        self.assertEqual(dom.attr("broker-state", "data-connected"), "1")
        self.assertEqual(dom.attr("breaker-state", "data-state"), "closed")
        self.assertEqual(dom.attr("breaker-state", "text"), "closed")
        self.assertEqual(dom.num("breaker-opened", "data-value"),
                         s.value("dlqd_breaker_opened_total"))
        self.assertEqual(dom.num("budget-deferred", "data-value"),
                         s.value("dlqd_retry_budget_deferred_total"))
        self.assertEqual(dom.num("dlq-depth", "data-value"), counters["dlq_total"])
        self.assertEqual(dom.attr("dlq-depth", "text"), str(counters["dlq_total"]))
        age = dom.num("dlq-oldest-age", "data-seconds")
        self.assertIsNotNone(age)
        self.assertAlmostEqual(age, s.value("dlqd_dlq_oldest_message_age_seconds"), delta=2.5)
        self.assertEqual(dom.num("dlq-total", "data-value"), counters["dlq_total"])
        self.assertEqual(dom.num("share-non-retryable", "data-count"), counters["non_retryable"])
        self.assertEqual(dom.num("share-retry-exhausted", "data-count"), counters["retry_exhausted"])
        self.assertEqual(dom.num("share-other", "data-count"), counters["other_dlq"])
        pct = 100.0 * counters["non_retryable"] / counters["dlq_total"]
        self.assertEqual(dom.attr("share-non-retryable-pct", "text"), "%.1f\u00a0%%" % pct)

        # Top error codes: every DLQ code, most frequent first.
        want = sorted(((code, cls, n) for (code, cls), n in counters["dead_lettered"].items()),
                      key=lambda r: (-r[2], r[0]))
        got = [(r["data-code"], r["data-class"], int(r["data-count"])) for r in dom.rows]
        self.assertEqual(got, want)

        totals = {"consumed": counters["consumed"], "succeeded": counters["succeeded"],
                  "retried": sum(counters["retried"].values()),
                  "dead-lettered": counters["dlq_total"],
                  "escalations": sum(counters["escalations"].values()),
                  "dlq-publish-failures": 0}
        for k, v in totals.items():
            self.assertEqual(dom.num("total-" + k, "data-value"), v, "total-" + k)
            # At rest: nothing moves, and the page says exactly 0.
            self.assertEqual(dom.num("rate-" + k, "data-rate"), 0, "rate-" + k)
        self.assertEqual(dom.num("dlq-rate", "data-rate"), 0)
        self.assertEqual(dom.num("in-flight", "data-value"), 0)
        self.assertStopsCleanly(d)
        self.assertAllAccounted(msgs, expected)

    def test_live_rates(self):
        c = self.ctx
        c.start_stub()
        c.write_config(prefetch=20, extra=metrics_extra("1s"))
        d = c.start_dlqd()
        proxy = SlowProxy(c.metrics_port, delay=1.0)
        self.addCleanup(proxy.stop)
        msgs, expected = [], {}
        stop = threading.Event()

        def trickle():
            i = 0
            while not stop.is_set():
                mid = "live-%d" % i
                if i % 4 == 3:
                    m = Msg(envelope(mid, stub={"op": "fail", "status": 400}), key=mid)
                    expected[mid] = dlq("INVALID_PAYLOAD", "NON_RETRYABLE", 1)
                else:
                    m = Msg(envelope(mid), key=mid)
                    expected[mid] = success(0)
                msgs.append(m)
                c.broker.publish(c.q, [m])
                i += 1
                stop.wait(0.05)

        t = threading.Thread(target=trickle, daemon=True)
        t.start()
        try:
            dom = render(c, "http://127.0.0.1:%d/" % proxy.port, 9000)
        finally:
            stop.set()
            t.join(10)
        polls = int(dom.num("updated", "data-polls"))
        note("%d polls rendered, %d samples served, %d messages" %
             (polls, len(proxy.samples), len(msgs)))
        self.assertGreaterEqual(polls, 3)
        a, b = proxy.samples[polls - 2], proxy.samples[polls - 1]
        dt = b["now_seconds"] - a["now_seconds"]
        self.assertGreater(dt, 0.9, "samples not a second apart: the proxy did not hold them")
        for page, key in (("consumed", "consumed"), ("succeeded", "succeeded"),
                          ("dead-lettered", "dead_lettered")):
            truth = (b[key] - a[key]) / dt
            self.assertAlmostEqual(dom.num("rate-" + page, "data-rate"), truth, places=6,
                                   msg="rate-" + page)
            self.assertEqual(dom.num("total-" + page, "data-value"), b[key])
        self.assertGreater(dom.num("rate-consumed", "data-rate"), 0, "no live consumption seen")
        self.assertAlmostEqual(dom.num("dlq-rate", "data-rate"),
                               (b["dead_lettered"] - a["dead_lettered"]) / dt, places=6)

        c.wait_settled(expected, c.stub.successes, timeout=60)
        self.assertStopsCleanly(d)
        self.assertAllAccounted(msgs, expected)


if __name__ == "__main__":
    if not shutil.which(CHROMIUM):
        sys.stderr.write("test_status_page: SETUP ERROR: %s missing (Debian package chromium)\n"
                         "FAILED (environment)\n" % CHROMIUM)
        sys.exit(1)
    dlqtest.main()
