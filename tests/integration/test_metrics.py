"""
/metrics against a known workload: every counter equals what happened, every
family has HELP and TYPE, `promtool check metrics` accepts a real scrape, and
the DLQ gauges equal the DLQ. Then bad clients (unknown paths, huge headers,
more connections than the server takes, slowloris senders) hammer the
metrics port while dlqd works through a workload: every message is still
accounted for and /metrics still answers.

The helpers at the top (the workload with its expected counters, the
exposition parser, scraping) are shared by test_prometheus.py,
test_status_page.py and test_dlq_gauges.py.
"""
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dlqtest  # noqa: E402
from dlqtest import Msg, dlq, envelope, note, scaled, success  # noqa: E402

PROMTOOL = "/usr/bin/promtool"
SOURCE_DIR = dlqtest.SOURCE_DIR

# --------------------------------------------------------------------------
# The known workload (test taxonomy: max_attempt 3 for TRANSIENT)

MAX_ATTEMPT = 3
SIZES = {"ok": 60, "slow": 10, "transient": 20, "exhausted": 6, "bad": 10, "auth": 4,
         "unknown": 3, "raw": 5}


def known_workload(scale=1):
    """(msgs, expected for account(), expected counters). scale multiplies
    every kind, so a test can make the same mix bigger."""
    n = {k: v * scale for k, v in SIZES.items()}
    msgs, expected = [], {}

    def add(mid, stub, outcome):
        msgs.append(Msg(envelope(mid, stub=stub), key=mid))
        expected[mid] = outcome

    for i in range(n["ok"]):
        add("ok-%d" % i, None, success(0))
    for i in range(n["slow"]):
        add("slow-%d" % i, {"op": "sleep", "ms": 120}, success(0))
    for i in range(n["transient"]):
        add("tr-%d" % i, {"op": "fail", "status": 503, "times": 1}, success(1))
    for i in range(n["exhausted"]):
        add("ex-%d" % i, {"op": "fail", "status": 503},
            dlq("RETRY_EXHAUSTED", "PERSISTENT", MAX_ATTEMPT + 1))
    for i in range(n["bad"]):
        add("bad-%d" % i, {"op": "fail", "status": 400}, dlq("INVALID_PAYLOAD", "NON_RETRYABLE", 1))
    for i in range(n["auth"]):
        add("auth-%d" % i, {"op": "fail", "status": 401}, dlq("AUTH_REVOKED", "NON_RETRYABLE", 1))
    for i in range(n["unknown"]):
        add("unk-%d" % i, {"op": "fail", "status": 500}, dlq("UNKNOWN_ERROR", "PERSISTENT", 1))
    for i in range(n["raw"]):
        label = "raw-%d" % i
        msgs.append(Msg(b"not an envelope %d {" % i, key=label))
        expected[label] = "invalid"

    runs = (n["ok"] + n["slow"] + 2 * n["transient"] + (MAX_ATTEMPT + 1) * n["exhausted"] +
            n["bad"] + n["auth"] + n["unknown"])
    dead = {("RETRY_EXHAUSTED", "PERSISTENT"): n["exhausted"],
            ("INVALID_PAYLOAD", "NON_RETRYABLE"): n["bad"],
            ("AUTH_REVOKED", "NON_RETRYABLE"): n["auth"],
            ("UNKNOWN_ERROR", "PERSISTENT"): n["unknown"],
            ("INVALID_ENVELOPE", "NON_RETRYABLE"): n["raw"]}
    counters = {
        "consumed": runs + n["raw"],
        "succeeded": n["ok"] + n["slow"] + n["transient"],
        "retried": {("UPSTREAM_THROTTLED", "TRANSIENT"): n["transient"] + MAX_ATTEMPT * n["exhausted"]},
        "dead_lettered": dead,
        "escalations": {("AUTH_REVOKED", "NON_RETRYABLE"): n["auth"]},
        "handler_runs": runs,
        # Slow ones sleep 120 ms: at least that many runs are over 0.1 s.
        "slow_runs": n["slow"],
        "dlq_total": sum(dead.values()),
        "non_retryable": n["bad"] + n["auth"] + n["raw"],
        "retry_exhausted": n["exhausted"],
        "other_dlq": n["unknown"],
    }
    return msgs, expected, counters


def metrics_extra(poll="1s"):
    return {"metrics": {"dlq_poll_interval": poll}}


def run_known_workload(tc, scale=1, prefetch=20, poll="1s", before_publish=None):
    """Starts a stub and dlqd, runs the workload until everything settled and
    the DLQ gauge shows the whole DLQ. before_publish() runs once dlqd is
    ready. Returns (dlqd, msgs, expected, counters, t_first_publish)."""
    c = tc.ctx
    c.start_stub()
    c.write_config(prefetch=prefetch, extra=metrics_extra(poll))
    d = c.start_dlqd()
    msgs, expected, counters = known_workload(scale)
    if before_publish:
        before_publish()
    t0 = time.time()
    c.broker.publish(c.q, msgs)
    n_raw = sum(1 for v in expected.values() if v == "invalid")
    real = {k: v for k, v in expected.items() if v != "invalid"}
    c.wait_settled(real, c.stub.successes, n_raw=n_raw, timeout=90)
    wait_at_rest(c, counters)
    return d, msgs, expected, counters, t0


def wait_at_rest(c, counters):
    """Until nothing is in flight, everything was consumed and the DLQ gauge
    (refreshed every poll interval) shows the whole DLQ."""
    def at_rest():
        s = parse(c.metrics())
        return (s.value("dlqd_messages_in_flight") == 0 and
                s.value("dlqd_dlq_messages") == counters["dlq_total"] and
                s.value("dlqd_messages_consumed_total") == counters["consumed"])
    c.wait_until(at_rest, 30, "dlqd at rest with the whole DLQ in dlqd_dlq_messages")


# --------------------------------------------------------------------------
# The text exposition format

_SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


class Scrape:
    def __init__(self, text):
        self.text = text
        self.help, self.type, self.samples = {}, {}, {}
        for line in text.splitlines():
            if line.startswith("# HELP "):
                name, _, h = line[7:].partition(" ")
                self.help[name] = h
            elif line.startswith("# TYPE "):
                name, _, t = line[7:].partition(" ")
                self.type[name] = t
            elif line and not line.startswith("#"):
                m = _SAMPLE_RE.match(line)
                if not m:
                    raise AssertionError("bad sample line %r" % line)
                labels = tuple(sorted(_LABEL_RE.findall(m.group(3) or "")))
                self.samples[(m.group(1), labels)] = float(m.group(4))

    def value(self, name, **labels):
        return self.samples.get((name, tuple(sorted(labels.items()))))

    def series(self, name):
        """{labels dict as a sorted tuple: value} of one sample name."""
        return {lab: v for (n, lab), v in self.samples.items() if n == name}

    def by_error(self, name):
        return {(dict(lab)["error_code"], dict(lab)["error_class"]): v
                for lab, v in self.series(name).items()}

    def families(self):
        return set(self.type)


def parse(text):
    return Scrape(text)


def http_get(port, path, timeout=10):
    """(status, headers, body) of GET path on the metrics port."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def promtool_check_metrics(text):
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    return p.returncode, p.stdout.decode(errors="replace")


CONTRACT = {
    "dlqd_messages_consumed_total": "counter", "dlqd_messages_succeeded_total": "counter",
    "dlqd_messages_retried_total": "counter", "dlqd_messages_dead_lettered_total": "counter",
    "dlqd_handler_duration_seconds": "histogram", "dlqd_messages_in_flight": "gauge",
    "dlqd_dlq_messages": "gauge", "dlqd_dlq_oldest_message_age_seconds": "gauge",
    "dlqd_dlq_publish_failures_total": "counter", "dlqd_broker_connected": "gauge",
    "dlqd_broker_reconnects_total": "counter", "dlqd_build_info": "gauge",
    "dlqd_poison_messages_total": "counter",
    "dlqd_breaker_state": "gauge", "dlqd_breaker_opened_total": "counter",
    "dlqd_retry_budget_deferred_total": "counter",
}
EXTENSIONS = {"dlqd_escalations_total": "counter", "dlqd_queue_info": "gauge"}


def assert_counters(tc, s, counters):
    """Every counter of a scrape against the known workload's truth."""
    eq = tc.assertEqual
    eq(s.value("dlqd_messages_consumed_total"), counters["consumed"], "consumed")
    eq(s.value("dlqd_messages_succeeded_total"), counters["succeeded"], "succeeded")
    eq(s.by_error("dlqd_messages_retried_total"), counters["retried"], "retried by error")
    eq(s.by_error("dlqd_messages_dead_lettered_total"), counters["dead_lettered"],
       "dead-lettered by error")
    eq(s.by_error("dlqd_escalations_total"), counters["escalations"], "escalations")
    eq(s.value("dlqd_handler_duration_seconds_count"), counters["handler_runs"], "handler runs")
    eq(s.value("dlqd_handler_duration_seconds_bucket", le="+Inf"), counters["handler_runs"])
    eq(s.value("dlqd_dlq_publish_failures_total"), 0)
    eq(s.value("dlqd_messages_in_flight"), 0)
    eq(s.value("dlqd_broker_connected"), 1)
    eq(s.value("dlqd_broker_reconnects_total"), 0)
    eq(s.value("dlqd_poison_messages_total"), 0)
    eq(s.value("dlqd_dlq_messages"), counters["dlq_total"])
    # A healthy run: the breaker stayed closed, no retry was deferred.
    eq(s.series("dlqd_breaker_state"),
       {(("state", "closed"),): 1, (("state", "half_open"),): 0, (("state", "open"),): 0})
    eq(s.value("dlqd_breaker_opened_total"), 0)
    eq(s.value("dlqd_retry_budget_deferred_total"), 0)


# --------------------------------------------------------------------------
# Tests

class Metrics(dlqtest.DlqdTestCase):
    def test_counters_equal_workload(self):
        c = self.ctx
        d, msgs, expected, counters, t0 = run_known_workload(self)
        text = c.metrics()
        s = parse(text)
        t_scrape = time.time()

        # Every contract metric and extension: HELP and TYPE of the right kind.
        for name, kind in list(CONTRACT.items()) + list(EXTENSIONS.items()):
            self.assertIn(name, s.help, "no HELP for %s" % name)
            self.assertEqual(s.type.get(name), kind, "TYPE of %s" % name)
        rc, out = promtool_check_metrics(text)
        self.assertEqual(rc, 0, "promtool check metrics:\n%s" % out)

        assert_counters(self, s, counters)
        self.assertEqual(s.value("dlqd_queue_info", queue=c.q), 1)
        self.assertEqual(list(s.series("dlqd_build_info").values()), [1])
        # Escalations as the log saw them.
        self.assertEqual(len(d.events("escalation")), SIZES["auth"])

        # Histogram: cumulative, _sum covers the slow runs, buckets suit
        # handler latency (something between 5 ms and 60 s).
        b = s.series("dlqd_handler_duration_seconds_bucket")
        les = sorted((float(dict(lab)["le"]), v) for lab, v in b.items())
        self.assertEqual(les[-1][0], float("inf"))
        self.assertEqual([v for _, v in les], sorted(v for _, v in les), "buckets not cumulative")
        self.assertLessEqual(les[0][0], 0.005)
        self.assertGreaterEqual(les[-2][0], 30)
        le_01 = s.value("dlqd_handler_duration_seconds_bucket", le="0.1")
        self.assertLessEqual(le_01, counters["handler_runs"] - counters["slow_runs"])
        self.assertGreaterEqual(s.value("dlqd_handler_duration_seconds_sum"),
                                counters["slow_runs"] * 0.12)

        # The oldest DLQ message was dead-lettered after we published and
        # before the scrape: its age lies in that window (header resolution
        # is one second, plus one poll interval of staleness).
        age = s.value("dlqd_dlq_oldest_message_age_seconds")
        self.assertIsNotNone(age, "no dlqd_dlq_oldest_message_age_seconds sample")
        self.assertGreaterEqual(age, 0)
        self.assertLessEqual(age, t_scrape - t0 + 2, "age %.1f s but the test ran %.1f s" %
                             (age, t_scrape - t0))

        # The probes left the DLQ complete: stop dlqd, then count every message.
        self.assertStopsCleanly(d)
        self.assertAllAccounted(msgs, expected)

    def test_bad_clients(self):
        """Abuse of the metrics port while dlqd works: the workload completes,
        every message counted, and /metrics still answers."""
        c = self.ctx
        c.start_stub()
        c.write_config(prefetch=20, extra=metrics_extra("1s"))
        d = c.start_dlqd()
        port = c.metrics_port
        # Under ASan everything is slower; half the size keeps it in time.
        msgs, expected, counters = known_workload(scale=1 if dlqtest.IS_ASAN else 2)
        stop = threading.Event()
        problems = []
        stats = {"404": 0, "431": 0, "slow_done": 0, "held": 0}

        def unknown_paths():
            paths = ["/nope", "/metrics/", "/../../etc/passwd", "/%00", "/" + "a" * 4000,
                     "/status.json/x"]
            i = 0
            while not stop.is_set():
                try:
                    st, _, _ = http_get(port, paths[i % len(paths)])
                except OSError:
                    continue  # every slot taken by the abusers: try again
                if st != 404:
                    problems.append("%s -> %d" % (paths[i % len(paths)], st))
                stats["404"] += 1
                i += 1

        def huge_headers():
            while not stop.is_set():
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                        s.sendall(b"GET /metrics HTTP/1.1\r\nX-Fill: " + b"x" * 20000 + b"\r\n\r\n")
                        resp = s.recv(100)
                except socket.timeout:
                    continue  # every slot taken by the abusers: try again
                except OSError as e:
                    # A reset before the answer would lose the 431.
                    problems.append("huge header: %r" % e)
                    continue
                if resp.startswith(b"HTTP/1.1 431"):
                    stats["431"] += 1
                else:
                    problems.append("huge header -> %r" % resp[:40])
                time.sleep(0.05)

        def many_connections():
            held = []
            try:
                for _ in range(150):
                    held.append(socket.create_connection(("127.0.0.1", port), timeout=10))
                stats["held"] = len(held)
                stop.wait()
            finally:
                for s in held:
                    s.close()

        def slowloris():
            req = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
            while not stop.is_set():
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                        for byte in req:
                            s.send(bytes([byte]))
                            if stop.wait(1):
                                return
                        stats["slow_done"] += 1  # the deadline did not cut it off?
                except OSError:
                    pass  # cut off by the 5 s deadline: expected

        threads = [threading.Thread(target=f, daemon=True) for f in
                   (unknown_paths, huge_headers, many_connections, slowloris, slowloris)]
        for t in threads:
            t.start()
        try:
            c.wait_until(lambda: stats["held"] == 150, 20, "150 idle connections open")
            note("abuse running; publishing %d messages" % len(msgs))
            c.broker.publish(c.q, msgs)
            n_raw = sum(1 for v in expected.values() if v == "invalid")
            real = {k: v for k, v in expected.items() if v != "invalid"}
            c.wait_settled(real, c.stub.successes, n_raw=n_raw, timeout=90)
            # While every abuser is still at it, a scrape gets through: the
            # per-connection deadline frees slots held by idle and slow clients.
            t_start = time.monotonic()
            s = None
            while s is None and time.monotonic() - t_start < scaled(30):
                try:
                    s = parse(c.metrics())
                except dlqtest.HarnessError:
                    time.sleep(0.2)
            self.assertIsNotNone(s, "/metrics did not answer within 30 s under abuse")
            note("scrape under abuse took %.1f s; %s" % (time.monotonic() - t_start, stats))
        finally:
            stop.set()
            for t in threads:
                t.join(40)
        self.assertFalse(problems, "bad-client answers: %s" % problems[:10])
        self.assertGreater(stats["404"], 0)
        self.assertGreater(stats["431"], 0)
        self.assertEqual(stats["slow_done"], 0, "a one-byte-a-second client outlived the deadline")

        wait_at_rest(c, counters)
        assert_counters(self, parse(c.metrics()), counters)
        # The server let go of every abuser.
        self.assertStopsCleanly(d)
        self.assertAllAccounted(msgs, expected)


if __name__ == "__main__":
    dlqtest.main()
