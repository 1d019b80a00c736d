"""
examples/ against dlqd: each example producer publishes a small order
workload, dlqd hands it to an example handler, and every job is counted:

  Python producer + Python HTTP handler     Python producer + Python exec handler
  Go producer + Go HTTP handler             Go producer + Go exec handler

The workload (examples/python/orders.py and examples/go/.../orders say what
each order does): orders that succeed at once, orders the handler reports
LEDGER_BUSY (TRANSIENT) for 1 or 2 attempts and that then succeed, one busy
for ever (RETRY_EXHAUSTED after max_attempt, its cause LEDGER_BUSY), and two
the handler refuses as ORDER_INVALID (NON_RETRYABLE, DLQ at once). dlqd runs
with the test taxonomy plus examples/taxonomy-rules.json, the rules the
README tells users to add, so the handler's own error_code is the verdict.

Counted: successes per message and attempt (dlqd's debug "success"
events, and for HTTP the handler's own log), retries per error_code
(dlqd_messages_retried_total), and every DLQ copy with its error_code, class,
attempt and the handler's evidence (handler_code, HTTP status or exit code).
The producers' envelopes (--dry-run) and dlqd's DLQ copies are validated
against docs/envelope.schema.json, and each DLQ copy holds its job's payload
line byte for byte.

The Go programs are built offline in a temp dir (GOPATH mode against
Debian's golang-github-rabbitmq-amqp091-go-dev; GOPROXY=off). Without a `go`
on PATH the two Go cases are SKIPPED, loudly; CI installs golang-go.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dlqtest  # noqa: E402
from dlqtest import Msg, dlq, note, success  # noqa: E402

try:
    import jsonschema
except ImportError:  # reported by __main__ below
    jsonschema = None

EXAMPLES = os.path.join(dlqtest.SOURCE_DIR, "examples")
PY = os.path.join(EXAMPLES, "python")
GO_SRC = os.path.join(EXAMPLES, "go")
GO_PKG = "dlqdexample"
AMQP091 = "/usr/share/gocode/src/github.com/rabbitmq/amqp091-go"
GO = shutil.which("go")
MAX_ATTEMPT = dlqtest.test_taxonomy()["policies"]["fast"]["max_attempt"]

# (label, payload line as the producer reads it, expected outcome).
# The whitespace and the big integer check that the payload's bytes survive.
WORKLOAD = [
    ("ok-1", b'{"order_id": "o-1", "amount_cents": 1250}', success(0)),
    ("ok-2", b'{"order_id":"o-2","amount_cents":99,"note":"caf\\u00e9 <&>"}', success(0)),
    ("ok-3", b'{"order_id":"o-3","amount_cents":1,"ref":123456789012345678901234567890}', success(0)),
    ("busy-1", b'{"order_id":"o-4","amount_cents":500,"simulate_busy":1}', success(1)),
    ("busy-2", b'{"order_id":"o-5","amount_cents":500,"simulate_busy":2}', success(2)),
    ("busy-forever", b'{"order_id":"o-6","amount_cents":500,"simulate_busy":99}',
     dlq("RETRY_EXHAUSTED", "PERSISTENT", MAX_ATTEMPT + 1,
         {"cause_code": "LEDGER_BUSY", "handler_code": "LEDGER_BUSY"})),
    ("bad-amount", b'{"order_id":"o-7","amount_cents":-5,  "ref": 1.10}',
     dlq("ORDER_INVALID", "NON_RETRYABLE", 1, {"handler_code": "ORDER_INVALID"})),
    ("no-order-id", b'{"amount_cents":5}',
     dlq("ORDER_INVALID", "NON_RETRYABLE", 1, {"handler_code": "ORDER_INVALID"})),
]
# Failures that a retry follows: busy-1 once, busy-2 twice, busy-forever
# max_attempt times (its last failure exhausts it instead).
EXPECTED_RETRIES = 1 + 2 + MAX_ATTEMPT


class GoBuild:
    """The Go examples, built once per run into a temp dir."""
    _dir = None

    @classmethod
    def binary(cls, name):
        if cls._dir is None:
            cls._dir = tempfile.mkdtemp(prefix="dlqd-examples-go-")
            env = dict(os.environ, GO111MODULE="off", GOPROXY="off", GOFLAGS="",
                       GOPATH="/usr/share/gocode:" + GO_SRC,
                       GOCACHE=os.path.join(cls._dir, "cache"))
            t0 = time.monotonic()
            for prog in ("producer", "http-handler", "exec-handler"):
                r = subprocess.run([GO, "build", "-o", os.path.join(cls._dir, prog),
                                    "%s/%s" % (GO_PKG, prog)],
                                   env=env, cwd=cls._dir, capture_output=True, timeout=600)
                if r.returncode != 0:
                    raise dlqtest.HarnessError("go build %s failed (is golang-github-rabbitmq-"
                                               "amqp091-go-dev installed? %s):\n%s" %
                                               (prog, AMQP091, r.stderr.decode(errors="replace")))
            note("built the Go examples in %.1fs (%s)" % (time.monotonic() - t0, cls._dir))
        return os.path.join(cls._dir, name)

    @classmethod
    def cleanup(cls):
        if cls._dir:
            shutil.rmtree(cls._dir, ignore_errors=True)


def load_validator():
    with open(os.path.join(dlqtest.SOURCE_DIR, "docs", "envelope.schema.json")) as f:
        schema = json.load(f)
    return jsonschema.validators.validator_for(schema)(schema)


def metric_sum(text, name, **labels):
    """The sum of a metric's samples whose labels include these."""
    total = 0.0
    for m in re.finditer(r"^%s(\{[^}]*\})? (\S+)$" % re.escape(name), text, re.M):
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m.group(2))
    return total


def wait_listening(port, proc, what, timeout=15):
    deadline = time.monotonic() + dlqtest.scaled(timeout)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise dlqtest.HarnessError("%s exited with %s" % (what, proc.returncode))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise dlqtest.HarnessError("%s is not listening on %d" % (what, port))


class Examples(dlqtest.DlqdTestCase):
    @classmethod
    def setUpClass(cls):
        cls.validator = load_validator()
        with open(os.path.join(EXAMPLES, "taxonomy-rules.json")) as f:
            cls.rules = json.load(f)

    @classmethod
    def tearDownClass(cls):
        GoBuild.cleanup()

    def setUp(self):
        super().setUp()
        # dlqd logs each success (message_id, attempt) at debug.
        self.enterContext(mock.patch.dict(os.environ, {"DLQD_LOG_LEVEL": "debug"}))

    def need_go(self):
        if GO is None:
            msg = "SKIPPED: no `go` on PATH, the Go examples are NOT tested (apt install golang-go " \
                  "golang-github-rabbitmq-amqp091-go-dev)"
            note("!" * 72)
            note(msg)
            note("!" * 72)
            self.skipTest(msg)

    # -- the pieces
    def start_http_handler(self, argv):
        port = dlqtest.free_port()
        log_path = self.ctx.path("handler.log")
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(argv + ["--listen", "127.0.0.1:%d" % port],
                                    stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                    start_new_session=True)

        def stop():
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.addCleanup(stop)
        wait_listening(port, proc, "the example HTTP handler")
        return "http://127.0.0.1:%d/jobs" % port, log_path

    def produce(self, argv):
        """Runs the producer on WORKLOAD; returns the message ids in order.
        (Go's flag package takes --name too, so both producers get --name.)"""
        stdin = b"\n".join(line for _, line, _ in WORKLOAD) + b"\n"
        dry = subprocess.run(argv + ["--dry-run"], input=stdin, capture_output=True,
                             timeout=60)
        self.assertEqual(dry.returncode, 0, dry.stderr.decode(errors="replace"))
        bodies = dry.stdout.splitlines()
        self.assertEqual(len(bodies), len(WORKLOAD))
        for (label, line, _), body in zip(WORKLOAD, bodies):
            errors = [e.message for e in self.validator.iter_errors(json.loads(body))]
            self.assertEqual(errors, [], "%s: the producer's envelope breaks the schema: %s" %
                             (label, body))
            self.assertIn(b'"payload":' + line + b"}", body, "%s: payload bytes changed" % label)

        r = subprocess.run(argv + ["--url", dlqtest.AMQP_URL, "--queue", self.ctx.q],
                           input=stdin, capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0, "producer failed: %s" % r.stderr.decode(errors="replace"))
        ids = r.stdout.decode().split()
        self.assertEqual(len(ids), len(WORKLOAD), "producer printed %r" % ids)
        self.assertEqual(len(set(ids)), len(ids), "message ids not unique: %r" % ids)
        return ids

    def run_example(self, producer, handler_type, handler_argv):
        c = self.ctx
        c.write_taxonomy(dlqtest.test_taxonomy(rules_before=self.rules))
        url = log_path = command = None
        if handler_type == "http":
            url, log_path = self.start_http_handler(handler_argv)
        else:
            command = " ".join(handler_argv)
        c.write_config(handler=handler_type, url=url, command=command, prefetch=20, timeout="10s")
        d = c.start_dlqd()

        ids = self.produce(producer)
        msgs, expected, lines = [], {}, {}
        for mid, (label, line, outcome) in zip(ids, WORKLOAD):
            # What check_dlq_copy compares with: the id and the payload.
            msgs.append(Msg(b'{"message_id":"%s","payload":%s}' % (mid.encode(), line), key=mid))
            expected[mid] = outcome
            lines[mid] = line
        label_of = {mid: label for mid, (label, _, _) in zip(ids, WORKLOAD)}

        def successes():
            out = {}
            for e in d.events("success"):
                out.setdefault(e.get("message_id"), []).append(dlqtest._int(e.get("attempt")))
            return out
        c.wait_settled(expected, successes, timeout=60)

        report, copies = self.assertAllAccounted(msgs, expected, successes())
        for g in copies:
            mid = g.header("x-dlqd-message-id")
            errors = [e.message for e in self.validator.iter_errors(g.json())]
            self.assertEqual(errors, [], "%s: dlqd's DLQ copy breaks the schema" % label_of.get(mid))
            self.assertIn(b'"payload":' + lines[mid], g.body,
                          "%s: the DLQ copy's payload is not the producer's bytes" % label_of[mid])
            if expected[mid][1] == "ORDER_INVALID":
                evidence = ({"http_status": 422} if handler_type == "http" else {"exit_code": 65})
                le = g.json()["last_error"]
                for k, v in evidence.items():
                    self.assertEqual(le.get(k), v, "%s: last_error %s" % (label_of[mid], le))

        text = c.metrics()
        retried = metric_sum(text, "dlqd_messages_retried_total", error_code="LEDGER_BUSY",
                             error_class="TRANSIENT")
        all_retried = metric_sum(text, "dlqd_messages_retried_total")
        n_ok = sum(1 for _, _, o in WORKLOAD if o[0] == "success")
        note("%s -> %s handler: %d succeeded, %d retries (LEDGER_BUSY), %d in the DLQ (%s)" %
             (os.path.basename(producer[-1]), handler_type, n_ok, retried, len(copies),
              ", ".join(sorted("%s/%s" % (g.header("x-dlqd-error-code"), g.header("x-dlqd-attempt"))
                               for g in copies))))
        self.assertEqual(retried, EXPECTED_RETRIES, "LEDGER_BUSY retries")
        self.assertEqual(all_retried, EXPECTED_RETRIES, "retries of any code:\n%s" %
                         "\n".join(l for l in text.splitlines() if l.startswith("dlqd_messages_retried")))
        self.assertEqual(metric_sum(text, "dlqd_messages_succeeded_total"), n_ok)

        if log_path:
            # The handler's own account: it saw each success's Idempotency-Key
            # and X-Attempt.
            with open(log_path) as f:
                seen = set(re.findall(r"message_id=(\S+) attempt=(\d+) verdict=ok", f.read()))
            for mid, outcome in expected.items():
                if outcome[0] == "success":
                    self.assertIn((mid, str(outcome[1])), seen,
                                  "%s: not in the handler's log as ok at attempt %s" %
                                  (label_of[mid], outcome[1]))
        self.assertStopsCleanly(d)

    # -- the four pairs
    def test_python_http(self):
        self.run_example([dlqtest.PYTHON, os.path.join(PY, "producer.py")], "http",
                         [dlqtest.PYTHON, os.path.join(PY, "http_handler.py")])

    def test_python_exec(self):
        self.run_example([dlqtest.PYTHON, os.path.join(PY, "producer.py")], "exec",
                         [dlqtest.PYTHON, os.path.join(PY, "exec_handler.py")])

    def test_go_http(self):
        self.need_go()
        self.run_example([GoBuild.binary("producer")], "http", [GoBuild.binary("http-handler")])

    def test_go_exec(self):
        self.need_go()
        self.run_example([GoBuild.binary("producer")], "exec", [GoBuild.binary("exec-handler")])


if __name__ == "__main__":
    if jsonschema is None:
        sys.stderr.write("test_examples: SETUP ERROR: python3-jsonschema is not installed for %s\n"
                         % sys.executable)
        sys.exit(1)
    dlqtest.main(need_stub=False)
