"""
The Prometheus side, with Debian's prometheus and promtool:
- packaging/prometheus/dlqd.rules.yml passes `promtool check rules`, and its
  unit tests (dlqd.rules.test.yml, one or more per alert) pass
  `promtool test rules`;
- a real Prometheus on loopback scrapes dlqd every second while it runs the
  known workload; its query API then returns exactly the workload's counts,
  the rules load and evaluate without error, and the escalation alert fires
  for the AUTH_REVOKED messages;
- docs/grafana/dlqd.json is valid JSON, names only metrics a real dlqd
  scrape exposes, and every panel's query runs on that Prometheus and
  returns data.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dlqtest  # noqa: E402
from dlqtest import note  # noqa: E402
from test_metrics import PROMTOOL, SIZES, parse, run_known_workload  # noqa: E402

PROMETHEUS = "/usr/bin/prometheus"
RULES_DIR = os.path.join(dlqtest.SOURCE_DIR, "packaging", "prometheus")
RULES = os.path.join(RULES_DIR, "dlqd.rules.yml")
DASHBOARD = os.path.join(dlqtest.SOURCE_DIR, "docs", "grafana", "dlqd.json")
# What Grafana puts in for its variables when the test runs the queries.
GRAFANA_VARS = {"$__rate_interval": "1m", "$__range": "5m", "$job": "dlqd", "$instance": ".*",
                "${datasource}": "prometheus"}


def run(argv, cwd=None):
    p = subprocess.run(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=120)
    return p.returncode, p.stdout.decode(errors="replace")


class PromServer:
    """prometheus on a free loopback port with a fresh TSDB, scraping dlqd."""

    def __init__(self, workdir, target_port):
        self.port = dlqtest.free_port()
        self.dir = os.path.join(workdir, "prometheus")
        os.makedirs(self.dir)
        cfg = os.path.join(self.dir, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    "rule_files:\n  - %s\n"
                    "scrape_configs:\n  - job_name: dlqd\n    static_configs:\n"
                    "      - targets: ['127.0.0.1:%d']\n" % (RULES, target_port))
        self.log_path = os.path.join(self.dir, "prometheus.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [PROMETHEUS, "--config.file=" + cfg, "--storage.tsdb.path=" + os.path.join(self.dir, "data"),
             "--web.listen-address=127.0.0.1:%d" % self.port, "--log.level=warn"],
            stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + dlqtest.scaled(60)
        while True:
            if self.proc.poll() is not None:
                raise dlqtest.HarnessError("prometheus exited: %s" % self.tail())
            try:
                with urllib.request.urlopen(self.url("/-/ready"), timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise dlqtest.HarnessError("prometheus not ready: %s" % self.tail())
            time.sleep(0.2)

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def api(self, path, **params):
        q = urllib.parse.urlencode(params)
        with urllib.request.urlopen(self.url("/api/v1/" + path + ("?" + q if q else "")),
                                    timeout=10) as r:
            body = json.loads(r.read())
        if body.get("status") != "success":
            raise AssertionError("%s %s: %s" % (path, params, body))
        return body["data"]

    def query(self, expr):
        """[(labels, float value)] of an instant query."""
        data = self.api("query", query=expr)
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        return [(r["metric"], float(r["value"][1])) for r in data["result"]]

    def value(self, expr):
        res = self.query(expr)
        return res[0][1] if len(res) == 1 else None

    def tail(self):
        return dlqtest._tail(self.log_path)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


def dashboard_exprs(dash):
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                out.append((p["title"], t["expr"]))
            walk(p.get("panels", []))
    walk(dash["panels"])
    return out


def grafana_expand(expr):
    for k, v in GRAFANA_VARS.items():
        expr = expr.replace(k, v)
    return expr


def metric_names(expr):
    """dlqd metric names an expression refers to, histogram suffixes removed."""
    names = set()
    for n in re.findall(r"\bdlqd_[a-z_]+", expr):
        names.add(re.sub(r"_(bucket|sum|count)$", "", n) if n.startswith(
            "dlqd_handler_duration_seconds") else n)
    return names


class Prometheus(dlqtest.DlqdTestCase):
    def test_rules_check_and_unit_tests(self):
        rc, out = run([PROMTOOL, "check", "rules", RULES])
        note(out.strip())
        self.assertEqual(rc, 0, out)
        self.assertIn("SUCCESS: 10 rules found", out)
        rc, out = run([PROMTOOL, "test", "rules", "dlqd.rules.test.yml"], cwd=RULES_DIR)
        self.assertEqual(rc, 0, out)
        self.assertIn("SUCCESS", out)
        # The example scrape config (which loads the rules) is valid.
        rc, out = run([PROMTOOL, "check", "config", "prometheus.example.yml"], cwd=RULES_DIR)
        self.assertEqual(rc, 0, out)
        # Every alert of the rule file has a unit test.
        with open(RULES) as f:
            alerts = set(re.findall(r"^\s*- alert: (\w+)", f.read(), re.M))
        with open(os.path.join(RULES_DIR, "dlqd.rules.test.yml")) as f:
            tested = set(re.findall(r"alertname: (\w+)", f.read()))
        self.assertEqual(len(alerts), 10)
        self.assertEqual(alerts - tested, set(), "alerts without a unit test")

    def test_real_scrape_and_dashboard(self):
        c = self.ctx
        c.metrics_port = dlqtest.free_port()
        prom = PromServer(c.dir, c.metrics_port)
        self.addCleanup(prom.stop)
        # Prometheus scrapes dlqd before, during and after the workload.
        d, msgs, expected, counters, t0 = run_known_workload(
            self, before_publish=lambda: c.wait_until(
                lambda: prom.value('up{job="dlqd"}') == 1, 30, "Prometheus scraping dlqd"))
        scrape = parse(c.metrics())
        # Enough samples after the workload for every rate() of the dashboard.
        c.wait_until(lambda: prom.value('count_over_time(up{job="dlqd"}[1m])') >= 5, 30,
                     "five scrapes")

        # Prometheus has caught up once it saw the final count.
        c.wait_until(lambda: prom.value("dlqd_messages_consumed_total") == counters["consumed"]
                     and prom.value("dlqd_dlq_messages") == counters["dlq_total"],
                     30, "Prometheus to scrape the final counts")
        self.assertEqual(prom.value('up{job="dlqd"}'), 1)
        self.assertEqual(prom.value("dlqd_messages_succeeded_total"), counters["succeeded"])
        self.assertEqual(prom.value("sum(dlqd_messages_retried_total)"),
                         sum(counters["retried"].values()))
        got = {(m["error_code"], m["error_class"]): v
               for m, v in prom.query("dlqd_messages_dead_lettered_total")}
        self.assertEqual(got, counters["dead_lettered"])
        got = {(m["error_code"], m["error_class"]): v
               for m, v in prom.query("dlqd_escalations_total")}
        self.assertEqual(got, counters["escalations"])
        self.assertEqual(prom.value("dlqd_handler_duration_seconds_count"),
                         counters["handler_runs"])
        self.assertEqual(prom.value("dlqd_dlq_publish_failures_total"), 0)
        self.assertEqual(prom.value("dlqd_messages_in_flight"), 0)
        self.assertEqual(prom.value("dlqd_broker_connected"), 1)
        self.assertEqual(prom.value('dlqd_queue_info{queue="%s"}' % c.q), 1)
        self.assertEqual(prom.value('sum(dlqd_messages_dead_lettered_total{error_class="NON_RETRYABLE"})'),
                         counters["non_retryable"])
        self.assertEqual(prom.value('sum(dlqd_messages_dead_lettered_total{error_code="RETRY_EXHAUSTED"})'),
                         counters["retry_exhausted"])

        # The rules load and evaluate; the escalations fire a real alert.
        def escalation_firing():
            alerts = prom.api("alerts")["alerts"]
            return [a for a in alerts if a["labels"].get("alertname") == "DlqdEscalation"
                    and a["state"] == "firing"]
        firing = c.wait_until(escalation_firing, 20, "DlqdEscalation firing")
        self.assertEqual({a["labels"]["error_code"] for a in firing}, {"AUTH_REVOKED"})
        groups = prom.api("rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        self.assertEqual(len(rules), 10)
        bad = [(r["name"], r.get("lastError")) for r in rules if r.get("health") != "ok"]
        self.assertFalse(bad, "rules that do not evaluate: %s" % bad)
        names = {a["labels"]["alertname"] for a in prom.api("alerts")["alerts"]
                 if a["state"] == "firing"}
        self.assertFalse(names & {"DlqdDown", "DlqdBrokerDisconnected", "DlqdDLQPublishFailing",
                                  "DlqdPoisonMessage"},
                         "alerts firing for a healthy dlqd: %s" % names)

        # The dashboard: valid JSON; every query names only exposed metrics,
        # runs on this Prometheus and returns data.
        with open(DASHBOARD) as f:
            dash = json.load(f)
        exprs = dashboard_exprs(dash)
        self.assertGreaterEqual(len(exprs), 15)
        titles = " | ".join(p["title"] for p in dash["panels"])
        for want in ("DLQ rate", "Top error codes", "Oldest DLQ", "Why messages were dead-lettered",
                     "Retries by error code", "Handler latency", "In flight", "Broker connection"):
            self.assertIn(want, titles)
        exposed = scrape.families()
        for title, expr in exprs:
            unknown = metric_names(expr) - exposed
            self.assertFalse(unknown, "panel %r uses metrics dlqd does not expose: %s" %
                             (title, unknown))
            res = prom.query(grafana_expand(expr))
            self.assertTrue(res, "panel %r: no data for %s" % (title, grafana_expand(expr)))
        # Template variables: dlqd_build_info carries job and instance.
        series = prom.api("series", **{"match[]": "dlqd_build_info"})
        self.assertEqual([s["job"] for s in series], ["dlqd"])

        # The share panel's three parts are exactly the workload's.
        # (max_over_time of a counter that only grows: its count now, exactly.)
        share = [prom.value(grafana_expand(e).replace("increase(", "max_over_time("))
                 for t, e in exprs if t == "Why messages were dead-lettered"]
        self.assertEqual(len(share), 3)
        self.assertEqual(share, [counters["non_retryable"], counters["retry_exhausted"],
                                 counters["other_dlq"]])
        self.assertEqual(len(d.events("escalation")), SIZES["auth"])
        self.assertStopsCleanly(d)
        self.assertAllAccounted(msgs, expected)


if __name__ == "__main__":
    for tool in (PROMETHEUS, PROMTOOL):
        if not shutil.which(tool):
            sys.stderr.write("test_prometheus: SETUP ERROR: %s missing (Debian package "
                             "prometheus)\nFAILED (environment)\n" % tool)
            sys.exit(1)
    dlqtest.main()
