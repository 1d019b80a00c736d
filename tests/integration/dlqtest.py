"""
dlqtest: the shared harness of dlqd's integration tests.

Every test runs the real daemon (DLQD_BIN) against the private RabbitMQ node
that tests/broker.sh runs, with dlqd-httpstub (DLQD_HTTPSTUB) or
tests/support/exec_job.py as the downstream, and then counts every message:
each one must have succeeded at the downstream or sit in <queue>.dlq exactly
as expected. Duplicates are allowed (delivery is at least once) and reported.

Standard library + pika only, for Debian's /usr/bin/python3.

Environment (tests/run-tests and ctest set all of these; defaults suit a
developer running one file by hand after `tests/broker.sh start`):
  DLQD_BIN, DLQD_HTTPSTUB      binaries (default: $DLQD_BUILD_DIR/...)
  DLQD_BUILD_DIR               default <source>/build
  DLQD_SOURCE_DIR              default: two levels above this file
  DLQD_TEST_AMQP_PORT          default 5673
  DLQD_TEST_AMQP_URL           default amqp://guest:guest@127.0.0.1:$PORT/%2f
  DLQD_BROKER_SH               default <source>/tests/broker.sh
  DLQD_TEST_TIMESCALE          multiplies every deadline (auto 2 for ASan)
  DLQD_TEST_KEEP=1             keep the per-test temp dir even on success
"""

import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

try:
    import pika
    import pika.exceptions as pex
except ImportError:  # pragma: no cover - reported by check_environment()
    pika = None
    pex = None

# --------------------------------------------------------------------------
# Environment

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("DLQD_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
BUILD_DIR = os.environ.get("DLQD_BUILD_DIR") or os.path.join(SOURCE_DIR, "build")
DLQD_BIN = os.environ.get("DLQD_BIN") or os.path.join(BUILD_DIR, "dlqd")
HTTPSTUB = os.environ.get("DLQD_HTTPSTUB") or os.path.join(BUILD_DIR, "tests", "dlqd-httpstub")
EXEC_JOB = os.path.join(SOURCE_DIR, "tests", "support", "exec_job.py")
BROKER_SH = os.environ.get("DLQD_BROKER_SH") or os.path.join(SOURCE_DIR, "tests", "broker.sh")
AMQP_PORT = int(os.environ.get("DLQD_TEST_AMQP_PORT") or 5673)
AMQP_URL = os.environ.get("DLQD_TEST_AMQP_URL") or \
    "amqp://guest:guest@127.0.0.1:%d/%%2f" % AMQP_PORT
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


def _detect_asan(path):
    try:
        with open(path, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


IS_ASAN = _detect_asan(DLQD_BIN)
TIMESCALE = float(os.environ.get("DLQD_TEST_TIMESCALE") or (2.0 if IS_ASAN else 1.0))


def scaled(seconds):
    return seconds * TIMESCALE


def note(msg):
    """Progress line on stderr (ctest shows it with --output-on-failure)."""
    sys.stderr.write("[%s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


class HarnessError(AssertionError):
    """The daemon or the environment did not do what the test needs."""


# --------------------------------------------------------------------------
# Broker: AMQP helpers (pika) and rabbitmqctl through tests/broker.sh

class Got:
    """One message read back from a queue."""

    def __init__(self, method, props, body):
        self.body = body
        self.routing_key = method.routing_key
        self.exchange = method.exchange
        self.redelivered = method.redelivered
        self.props = props
        self.headers = {k: _norm(v) for k, v in (props.headers or {}).items()}

    def json(self):
        return json.loads(self.body)

    def header(self, name, default=None):
        return self.headers.get(name, default)

    def __repr__(self):
        return "Got(rk=%r, headers=%r, body=%r)" % (self.routing_key, self.headers, self.body[:200])


def _norm(v):
    if isinstance(v, bytes):
        try:
            return v.decode("utf-8")
        except UnicodeDecodeError:
            return v
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_norm(x) for x in v]
    return v


class Msg:
    """A message to publish: body bytes plus optional headers / properties."""

    def __init__(self, body, key=None, headers=None, **props):
        if isinstance(body, dict):
            body = json.dumps(body, separators=(",", ":")).encode()
        elif isinstance(body, str):
            body = body.encode()
        self.body = body
        self.key = key  # message_id, or a label for a raw (invalid) body
        self.headers = headers
        self.props = props

    def properties(self):
        return pika.BasicProperties(delivery_mode=2, headers=self.headers, **self.props)


class Broker:
    def __init__(self, url=AMQP_URL):
        self.url = url
        self._conn = None

    # -- connection handling: one cached connection, rebuilt after errors
    def _params(self):
        p = pika.URLParameters(self.url)
        p.heartbeat = 0  # the harness sleeps between calls; no heartbeat timeouts
        p.connection_attempts = 1
        p.socket_timeout = 5
        p.blocked_connection_timeout = 30
        return p

    def connection(self):
        if self._conn is None or not self._conn.is_open:
            self._conn = pika.BlockingConnection(self._params())
        return self._conn

    def close(self):
        try:
            if self._conn is not None and self._conn.is_open:
                self._conn.close()
        except Exception:
            pass
        self._conn = None

    def _run(self, fn):
        """Runs fn(channel) on a fresh channel; reconnects once on a lost link."""
        for attempt in (0, 1):
            try:
                ch = self.connection().channel()
            except (pex.AMQPConnectionError, pex.ConnectionWrongStateError, OSError):
                self.close()
                if attempt:
                    raise
                continue
            try:
                return fn(ch)
            except (pex.StreamLostError, pex.ConnectionClosed, pex.ConnectionWrongStateError,
                    pex.AMQPConnectionError):
                self.close()
                if attempt:
                    raise
            finally:
                try:
                    if ch.is_open:
                        ch.close()
                except Exception:
                    self.close()
        raise HarnessError("unreachable")

    def reachable(self):
        try:
            self.connection()
            return True
        except Exception:
            self.close()
            return False

    # -- queues
    def _unless_missing(self, op):
        """op(ch)'s result, or None when the broker says 404 (no such thing)."""
        def fn(ch):
            try:
                return op(ch)
            except pex.ChannelClosedByBroker as e:
                if e.reply_code != 404:
                    raise
                return None
        return self._run(fn)

    def queue_info(self, name):
        """(ready message count, consumer count), or None if the queue does not exist."""
        def op(ch):
            m = ch.queue_declare(queue=name, passive=True).method
            return (m.message_count, m.consumer_count)
        return self._unless_missing(op)

    def depth(self, name):
        info = self.queue_info(name)
        return None if info is None else info[0]

    def exists(self, name):
        return self.queue_info(name) is not None

    def declare_queue(self, name, queue_type="classic", arguments=None):
        args = dict(arguments or {})
        if queue_type == "quorum":
            args["x-queue-type"] = "quorum"
        self._run(lambda ch: ch.queue_declare(queue=name, durable=True, arguments=args or None))

    def bind(self, queue, exchange, routing_key):
        self._run(lambda ch: ch.queue_bind(queue=queue, exchange=exchange, routing_key=routing_key))

    def unbind(self, queue, exchange, routing_key):
        self._run(lambda ch: ch.queue_unbind(queue=queue, exchange=exchange, routing_key=routing_key))

    def delete_queue(self, name):
        self._unless_missing(lambda ch: ch.queue_delete(queue=name))

    def delete_exchange(self, name):
        self._unless_missing(lambda ch: ch.exchange_delete(exchange=name))

    def exchange_exists(self, name):
        return self._unless_missing(
            lambda ch: ch.exchange_declare(exchange=name, passive=True) or True) is not None

    def purge(self, name):
        self._run(lambda ch: ch.queue_purge(queue=name))

    # -- messages
    def publish(self, queue, msgs, exchange=""):
        """Publishes msgs (Msg or dict or bytes) persistent, mandatory, with confirms."""
        msgs = [m if isinstance(m, Msg) else Msg(m) for m in msgs]

        def fn(ch):
            ch.confirm_delivery()
            for m in msgs:
                ch.basic_publish(exchange=exchange, routing_key=queue, body=m.body,
                                 properties=m.properties(), mandatory=True)
            return len(msgs)
        return self._run(fn)

    def get_all(self, queue, requeue=False, limit=None):
        """Reads every ready message of queue; acks them (or requeues them) at the end."""
        def fn(ch):
            out = []
            last = None
            while limit is None or len(out) < limit:
                method, props, body = ch.basic_get(queue=queue, auto_ack=False)
                if method is None:
                    break
                last = method.delivery_tag
                out.append(Got(method, props, body))
            if last is not None:
                if requeue:
                    ch.basic_nack(delivery_tag=last, multiple=True, requeue=True)
                else:
                    ch.basic_ack(delivery_tag=last, multiple=True)
            return out
        return self._run(fn)


def broker_sh(*args, timeout=120, check=True, env=None):
    """Runs tests/broker.sh ARGS with our port; returns stdout. env: overrides
    (DLQD_TEST_AMQP_PORT, DLQD_TEST_STATE...) for a test's own node."""
    full_env = dict(os.environ, DLQD_TEST_AMQP_PORT=str(AMQP_PORT))
    full_env.update(env or {})
    p = subprocess.run(["bash", BROKER_SH] + list(args), env=full_env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    if check and p.returncode != 0:
        raise HarnessError("broker.sh %s failed (%d): %s" %
                           (" ".join(args), p.returncode, p.stderr.decode(errors="replace")[-2000:]))
    return p.stdout.decode(errors="replace")


def ctl_json(*args, env=None):
    """rabbitmqctl ARGS with JSON output, e.g. ctl_json('list_queues', 'name', 'messages')."""
    out = broker_sh("ctl", *args, "-q", "--formatter", "json", env=env)
    out = out.strip()
    return json.loads(out) if out else []


def ctl_args(arguments):
    """rabbitmqctl's [[key, type, value], ...] as a dict."""
    if isinstance(arguments, dict):
        return arguments
    return {a[0]: a[-1] for a in arguments or []}


# --------------------------------------------------------------------------
# Envelopes, taxonomy and config

def envelope(mid, stub=None, payload=None, trace_id=None, **fields):
    """A valid envelope dict. stub = the downstream's behaviour (see the brief)."""
    p = dict(payload) if payload is not None else {"job": mid}
    if stub is not None:
        p["stub"] = stub
    env = {"message_id": mid, "trace_id": trace_id or ("trc-" + mid), "payload": p}
    env.update(fields)
    return env


def test_taxonomy(fast=None, rules_before=(), rules_after=()):
    """The tests' taxonomy: short delays so whole scenarios fit in seconds."""
    fast_policy = {"max_attempt": 3, "initial": "200ms", "multiplier": 2, "max": "2s",
                   "jitter": [0.1, 0.3]}
    if fast:
        fast_policy.update(fast)
    rules = list(rules_before) + [
        {"when": {"handler_code": ["QUOTA_EXCEEDED"]}, "error_code": "QUOTA_EXCEEDED",
         "class": "NON_RETRYABLE"},
        {"when": {"http_status": [429, 503]}, "error_code": "UPSTREAM_THROTTLED", "class": "TRANSIENT"},
        {"when": {"http_status": ["401", "403"]}, "error_code": "AUTH_REVOKED",
         "class": "NON_RETRYABLE", "escalate": True},
        {"when": {"http_status": ["4xx"]}, "error_code": "INVALID_PAYLOAD", "class": "NON_RETRYABLE"},
        {"when": {"timeout": True}, "error_code": "UPSTREAM_TIMEOUT", "class": "TRANSIENT"},
        {"when": {"exit_code": [75]}, "error_code": "TEMPFAIL", "class": "TRANSIENT"},
        {"when": {"exit_code": [65]}, "error_code": "DATAERR", "class": "NON_RETRYABLE"},
        {"when": {"transport": ["COULDNT_CONNECT", "COULDNT_RESOLVE_HOST"]},
         "error_code": "UPSTREAM_UNREACHABLE", "class": "TRANSIENT"},
    ] + list(rules_after)
    return {
        "version": 1,
        "policies": {"fast": fast_policy, "none": {"max_attempt": 0}},
        "classes": {"TRANSIENT": "fast", "PERSISTENT": "none", "NON_RETRYABLE": "none"},
        "rules": rules,
        "default": {"error_code": "UNKNOWN_ERROR", "class": "PERSISTENT", "policy": "none"},
    }


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def render_config(sections):
    out = []
    for name, kv in sections.items():
        out.append("[%s]" % name)
        for k, v in kv.items():
            if v is None:
                continue
            if isinstance(v, bool):
                v = "true" if v else "false"
            out.append("%s = %s" % (k, v))
        out.append("")
    return "\n".join(out)


# --------------------------------------------------------------------------
# dlqd's log: "<level> <message> key=value key="quoted value" ..."

_TOKEN_RE = re.compile(r'([A-Za-z_][A-Za-z0-9_.\-]*)=("(?:[^"\\]|\\.)*"|\S*)|(\S+)')


class Event:
    def __init__(self, level, message, fields, raw, index):
        self.level = level
        self.message = message
        self.fields = fields
        self.raw = raw
        self.index = index  # which dlqd run (0 = first start)

    @property
    def name(self):
        return self.fields.get("event")

    def get(self, key, default=None):
        return self.fields.get(key, default)

    def __repr__(self):
        return "Event(%r)" % self.raw


def _unquote(v):
    if len(v) >= 2 and v[0] == '"' and v[-1] == '"':
        try:
            return json.loads(v)
        except ValueError:
            return v[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return v


def parse_log_line(line, index=0):
    line = line.rstrip("\n")
    if not line.strip():
        return None
    parts = line.split(None, 1)
    level = parts[0]
    rest = parts[1] if len(parts) > 1 else ""
    toks = list(_TOKEN_RE.finditer(rest))
    # The key=value run is the trailing run of key=value tokens.
    start = len(toks)
    while start > 0 and toks[start - 1].group(1) is not None:
        start -= 1
    fields = {}
    for t in toks[start:]:
        fields[t.group(1)] = _unquote(t.group(2))
    message = rest[:toks[start].start()].strip() if start < len(toks) else rest.strip()
    return Event(level, message, fields, line, index)


SANITIZER_RE = re.compile(r"ERROR: (AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer)"
                          r"|runtime error: |SUMMARY: (Address|Leak|UndefinedBehavior)Sanitizer")


# --------------------------------------------------------------------------
# Processes

def _session_members(sid):
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        # state ppid pgrp session ...
        if len(fields) > 3 and int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(d))
    return pids


def procs_with_env(name, value):
    """Pids whose environment has name=value (e.g. exec jobs of one test)."""
    want = ("%s=%s" % (name, value)).encode()
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/environ" % d, "rb") as f:
                if want in f.read().split(b"\0"):
                    out.append(int(d))
        except OSError:
            pass
    return out


def kill_session(sid):
    """SIGKILLs whatever is left of a session we started (e.g. orphaned exec jobs)."""
    for pid in _session_members(sid):
        if pid != os.getpid():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


class Stub:
    """dlqd-httpstub on a random loopback port, logging every answer."""

    def __init__(self, workdir, delay_ms=None, name="stub", args=()):
        self.log_path = os.path.join(workdir, name + ".log")
        self.port_file = os.path.join(workdir, name + ".port")
        self.err_path = os.path.join(workdir, name + ".stderr")
        if not os.access(HTTPSTUB, os.X_OK):
            raise HarnessError("dlqd-httpstub not found at %s (set DLQD_HTTPSTUB)" % HTTPSTUB)
        argv = [HTTPSTUB, "--listen", "127.0.0.1:0", "--port-file", self.port_file,
                "--log", self.log_path]
        if delay_ms:
            argv += ["--delay-ms", str(delay_ms)]
        argv += list(args)  # e.g. ["--body-log", FILE]
        self.err = open(self.err_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self.err, stderr=self.err,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        self.port = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise HarnessError("dlqd-httpstub exited with %s: %s" %
                                   (self.proc.returncode, _tail(self.err_path)))
            try:
                with open(self.port_file) as f:
                    txt = f.read().strip()
                if txt:
                    self.port = int(txt)
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.02)
        if self.port is None:
            raise HarnessError("dlqd-httpstub wrote no port file")
        self.url = "http://127.0.0.1:%d/jobs" % self.port

    def records(self):
        return read_json_lines(self.log_path)

    def successes(self):
        """message_id -> list of attempts answered 2xx."""
        out = {}
        for r in self.records():
            st = _int(r.get("status"))
            if st is not None and 200 <= st < 300:
                out.setdefault(r.get("message_id"), []).append(_int(r.get("attempt")))
        return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        kill_session(self.proc.pid)
        self.err.close()


def _int(v):
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def read_json_lines(path):
    out = []
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return out
    for line in data.split(b"\n"):
        line = line.strip()
        if not line:
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            pass  # a line being written right now
    return out


def exec_successes(path):
    """message_id -> list of attempts that exited 0, from exec_job.py's log."""
    out = {}
    for r in read_json_lines(path):
        if _int(r.get("exit")) == 0:
            out.setdefault(r.get("message_id"), []).append(_int(r.get("attempt")))
    return out


def _tail(path, n=40):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode(errors="replace").splitlines()
        return "\n".join(lines[-n:])
    except OSError:
        return "(no %s)" % path


class Dlqd:
    """One dlqd process (several runs after restarts share the object)."""

    def __init__(self, ctx, config_path):
        self.ctx = ctx
        self.config_path = config_path
        self.runs = []  # (proc, log_path)
        self.start()

    @property
    def proc(self):
        return self.runs[-1][0]

    @property
    def log_path(self):
        return self.runs[-1][1]

    @property
    def pid(self):
        return self.proc.pid

    def start(self):
        if not os.access(DLQD_BIN, os.X_OK):
            raise HarnessError("dlqd not found at %s (set DLQD_BIN or DLQD_BUILD_DIR)" % DLQD_BIN)
        path = os.path.join(self.ctx.dir, "dlqd.%d.log" % len(self.runs))
        logf = open(path, "wb")
        env = dict(os.environ)
        env.pop("JOURNAL_STREAM", None)  # always log lines to stderr
        env.pop("NOTIFY_SOCKET", None)
        env.pop("WATCHDOG_USEC", None)
        proc = subprocess.Popen([DLQD_BIN, "--config", self.config_path], stdout=logf,
                                stderr=logf, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
        logf.close()
        self.runs.append((proc, path))
        note("dlqd started (pid %d, log %s)" % (proc.pid, path))
        return proc

    def alive(self):
        return self.proc.poll() is None

    def assert_alive(self, what=""):
        if not self.alive():
            raise HarnessError("dlqd exited (status %s)%s; log tail:\n%s" %
                               (self.proc.returncode, " " + what if what else "",
                                _tail(self.log_path)))

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout=30):
        """SIGTERM, then SIGKILL after timeout. Returns the exit status."""
        proc = self.proc
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(scaled(timeout))
            except subprocess.TimeoutExpired:
                note("dlqd did not exit %ds after SIGTERM, killing it" % timeout)
                proc.kill()
                proc.wait(10)
        kill_session(proc.pid)
        return proc.returncode

    def kill(self):
        proc = self.proc
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        kill_session(proc.pid)
        return proc.returncode

    def restart(self):
        self.kill()
        return self.start()

    # -- log
    def text(self, run=None):
        paths = [p for _, p in self.runs] if run is None else [self.runs[run][1]]
        out = []
        for p in paths:
            try:
                with open(p, "rb") as f:
                    out.append(f.read().decode(errors="replace"))
            except OSError:
                pass
        return "".join(out)

    def events(self, name=None, run=None):
        out = []
        for i, (_, p) in enumerate(self.runs):
            if run is not None and i != run:
                continue
            try:
                with open(p, "rb") as f:
                    lines = f.read().decode(errors="replace").splitlines()
            except OSError:
                continue
            for line in lines:
                ev = parse_log_line(line, i)
                if ev is not None and (name is None or ev.name == name):
                    out.append(ev)
        return out

    def wait_event(self, name, count=1, timeout=20, pred=None):
        def ok():
            evs = [e for e in self.events(name) if pred is None or pred(e)]
            return evs if len(evs) >= count else None
        return self.ctx.wait_until(ok, timeout, "%d %r event(s) in dlqd's log" % (count, name),
                                   check_alive=False)

    def sanitizer_errors(self):
        return [l for l in self.text().splitlines() if SANITIZER_RE.search(l)]

    def tail(self, n=40):
        return _tail(self.log_path, n)


# --------------------------------------------------------------------------
# The per-test context

class Ctx:
    def __init__(self, name):
        safe = re.sub(r"[^A-Za-z0-9_]", "_", name)[:40]
        self.name = safe
        self.q = "it_%s_%d_%04x" % (safe, os.getpid(), random.randrange(0x10000))
        self.dir = tempfile.mkdtemp(prefix="dlqd-it-%s-" % safe)
        self.broker = Broker()
        self.broker_env = None  # broker_sh() overrides when a test uses its own node
        self.stubs = []
        self.daemons = []
        self.metrics_port = None

    # -- names
    @property
    def dlq(self):
        return self.q + ".dlq"

    @property
    def retry_x(self):
        return self.q + ".retry"

    @property
    def dlx(self):
        return self.q + ".dlx"

    def is_lane(self, name):
        return re.fullmatch(re.escape(self.q) + r"\.retry\.\d+", name) is not None

    def path(self, name):
        return os.path.join(self.dir, name)

    # -- files
    def write(self, name, text):
        p = self.path(name)
        with open(p, "w" if isinstance(text, str) else "wb") as f:
            f.write(text)
        return p

    def write_taxonomy(self, tax=None, name="taxonomy.json"):
        if tax is None:
            tax = test_taxonomy()
        return self.write(name, tax if isinstance(tax, (str, bytes)) else json.dumps(tax, indent=2) + "\n")

    def write_config(self, handler="http", url=None, command=None, prefetch=50, timeout="5s",
                     taxonomy=None, queue_type="classic", drain_timeout="5s", declare=True,
                     extra=None, name="dlqd.conf", protection=False):
        """protection=False turns the circuit breaker and the retry budget off
        ([breaker] window = 0, [retry] budget_min_per_second = 0): tests of
        other features fail many calls on purpose and measure retry timing,
        which an open breaker or a deferral would shift by seconds.
        protection=True keeps dlqd's shipped defaults; extra overrides both."""
        if taxonomy is None:
            taxonomy = self.path("taxonomy.json")
            if not os.path.exists(taxonomy):
                self.write_taxonomy()
        if handler == "http" and url is None:
            if not self.stubs:
                self.start_stub()
            url = self.stubs[0].url
        if self.metrics_port is None:
            self.metrics_port = free_port()
        sections = {
            "broker": {"url": AMQP_URL, "prefetch": prefetch, "heartbeat": "10s"},
            "pipeline": {"queue": self.q, "queue_type": queue_type, "declare": declare},
            "handler": {"type": handler, "url": url if handler == "http" else None,
                        "command": command if handler == "exec" else None, "timeout": timeout},
            "retry": {"taxonomy": taxonomy},
            "metrics": {"listen": "127.0.0.1:%d" % self.metrics_port},
            "shutdown": {"drain_timeout": drain_timeout},
        }
        if not protection:
            sections["breaker"] = {"window": 0}
            sections["retry"]["budget_min_per_second"] = 0
        for sec, kv in (extra or {}).items():
            sections.setdefault(sec, {}).update(kv)
        return self.write(name, render_config(sections))

    def exec_command(self, log_name="exec.log"):
        """[handler] command running exec_job.py with DLQD_TEST_LOG set (via env(1))."""
        self.exec_log = self.path(log_name)
        return "/usr/bin/env DLQD_TEST_LOG=%s %s %s" % (self.exec_log, PYTHON, EXEC_JOB)

    # -- processes
    def start_stub(self, delay_ms=None, args=()):
        s = Stub(self.dir, delay_ms=delay_ms, name="stub%d" % len(self.stubs), args=args)
        self.stubs.append(s)
        return s

    @property
    def stub(self):
        return self.stubs[0]

    def start_dlqd(self, config=None, wait_ready=True):
        d = Dlqd(self, config or self.path("dlqd.conf"))
        self.daemons.append(d)
        if wait_ready:
            self.wait_ready(d)
        return d

    def wait_ready(self, d, timeout=30):
        """Until dlqd consumes the main queue and its publisher link is up.

        Both links declare the topology when they connect, and they connect
        independently: a test that changes the topology (unbinds the DLQ, say)
        right after start must wait for the second declaration too, or the
        publisher puts back what the test took away. When dlqd logs to the
        journal its log file holds no events, and consuming is all we see."""
        def publishing():
            evs = d.events(run=len(d.runs) - 1)
            return not evs or any(e.name == "publisher-connected" for e in evs)

        def ok():
            d.assert_alive("before consuming %s" % self.q)
            info = self.broker.queue_info(self.q)
            return info is not None and info[1] >= 1 and publishing()
        self.wait_until(ok, timeout, "dlqd consuming %s" % self.q, check_alive=False)

    def metrics(self):
        url = "http://127.0.0.1:%d/metrics" % self.metrics_port
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.read().decode()
        except OSError as e:
            raise HarnessError("metrics endpoint %s ([metrics] listen) not reachable: %s" % (url, e)) from None

    # -- waiting
    def wait_until(self, pred, timeout, what, interval=0.1, check_alive=True):
        deadline = time.monotonic() + scaled(timeout)
        last_exc = None
        while True:
            if check_alive:
                for d in self.daemons:
                    d.assert_alive("while waiting for %s" % what)
            try:
                r = pred()
                if r:
                    return r
                last_exc = None
            except (pex.AMQPError, OSError) as e:
                last_exc = e
            if time.monotonic() >= deadline:
                raise HarnessError("timed out after %.0fs waiting for %s%s" %
                                   (scaled(timeout), what,
                                    " (last error: %r)" % last_exc if last_exc else ""))
            time.sleep(interval)

    # -- queue state
    def our_queues(self, fields=("name", "messages")):
        rows = ctl_json("list_queues", *fields, env=self.broker_env)
        return [r for r in rows if r["name"] == self.q or r["name"].startswith(self.q + ".")]

    def lanes(self, fields=("name", "messages")):
        return [r for r in self.our_queues(fields) if self.is_lane(r["name"])]

    def backlog(self):
        """Messages (ready + unacked) in the main queue and every delay lane."""
        return {r["name"]: r["messages"] for r in self.our_queues()
                if r["name"] == self.q or self.is_lane(r["name"])}

    def wait_settled(self, expected, successes, n_raw=0, timeout=60, stall=30):
        """
        Waits until every expected success was seen (successes() -> dict), the
        DLQ holds at least the expected number of copies, and the main queue
        has nothing ready. Then checks (rabbitmqctl, counts unacked too) that
        the main queue and the lanes are empty. Gives up early when nothing
        moves for `stall` seconds.
        """
        want_ok = {k for k, v in expected.items() if outcome_kind(v) == "success"}
        want_dlq = sum(1 for v in expected.values() if outcome_kind(v) == "dlq") + n_raw
        state = {"key": None, "since": time.monotonic()}

        def ok():
            seen = successes()
            missing = want_ok - set(seen)
            dlq = self.broker.depth(self.dlq) or 0
            main = self.broker.depth(self.q)
            key = (len(missing), sum(len(v) for v in seen.values()), dlq, main)
            now = time.monotonic()
            if key != state["key"]:
                state.update(key=key, since=now)
            state.update(missing=sorted(missing), dlq=dlq, main=main)
            if not missing and dlq >= want_dlq and main == 0:
                return True
            if now - state["since"] > scaled(stall):
                raise HarnessError("no progress for %.0fs" % scaled(stall))
            return False

        def explain(e):
            try:
                backlog = self.backlog()
            except Exception as x:
                backlog = repr(x)
            return HarnessError("%s waiting for %d messages to settle: %d successes missing "
                                "(e.g. %s), %s/%s in DLQ, %s ready in %s; ready+unacked: %s" %
                                (e, len(expected) + n_raw, len(state.get("missing", [])),
                                 state.get("missing", [])[:5], state.get("dlq"), want_dlq,
                                 state.get("main"), self.q, backlog))
        try:
            self.wait_until(ok, timeout, "all %d messages settled" % (len(expected) + n_raw),
                            interval=0.25)
        except HarnessError as e:
            raise explain(e) from None
        # Everything is out of the lanes and acked on the main queue.
        try:
            self.wait_until(lambda: not any(self.backlog().values()), 20,
                            "main queue and delay lanes empty (ready + unacked)", interval=0.5)
        except HarnessError as e:
            raise explain(e) from None

    # -- cleanup
    def cleanup(self):
        for d in self.daemons:
            try:
                rc = d.stop()
                if rc not in (0, None):
                    note("dlqd (pid %d) exited with %s at cleanup" % (d.pid, rc))
            except Exception as e:  # keep cleaning up
                note("cleanup: stopping dlqd: %r" % e)
        if getattr(self, "exec_log", None):
            for pid in procs_with_env("DLQD_TEST_LOG", self.exec_log):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        for s in self.stubs:
            try:
                s.stop()
            except Exception as e:
                note("cleanup: stopping stub: %r" % e)
        if not self.broker.reachable():
            try:  # a test that restarts the broker failed half-way
                broker_sh("start", timeout=180, env=self.broker_env)
            except Exception as e:
                note("cleanup: starting the broker: %r" % e)
        try:
            names = [r["name"] for r in self.our_queues(("name",))]
        except Exception:
            names = [self.q, self.dlq]
        for n in set(names) | {self.q, self.dlq}:
            try:
                self.broker.delete_queue(n)
            except Exception:
                pass
        for x in (self.retry_x, self.dlx):
            try:
                self.broker.delete_exchange(x)
            except Exception:
                pass
        self.broker.close()


# --------------------------------------------------------------------------
# Outcomes and accounting

SUCCESS = "success"


def success(attempt=None):
    """Expected: the downstream answered 2xx (at X-Attempt == attempt, if given)."""
    return ("success", attempt)


def busy_workload(seed, n_slow, n_transient, max_times, n_bad=0):
    """Slow successes (20-50 ms each), transient failures that recover after
    1..max_times tries, and non-retryable ones, shuffled: keeps dlqd busy
    for a few seconds, for fault tests that hit it mid-run."""
    rnd = random.Random(seed)
    msgs, expected = [], {}
    for i in range(n_slow):
        mid = "slow-%d" % i
        msgs.append(Msg(envelope(mid, stub={"op": "sleep", "ms": rnd.randint(20, 50)}), key=mid))
        expected[mid] = success(0)
    for i in range(n_transient):
        k = 1 + i % max_times
        mid = "tr-%d-%d" % (k, i)
        msgs.append(Msg(envelope(mid, stub={"op": "fail", "status": 503, "times": k}), key=mid))
        expected[mid] = success(k)
    for i in range(n_bad):
        mid = "bad-%d" % i
        msgs.append(Msg(envelope(mid, stub={"op": "fail", "status": 400}), key=mid))
        expected[mid] = dlq("INVALID_PAYLOAD", "NON_RETRYABLE", 1)
    rnd.shuffle(msgs)
    return msgs, expected


def dlq(code, cls, attempt, evidence=None):
    """Expected: one copy in <q>.dlq with this code, class and attempt."""
    return ("dlq", code, cls, attempt, evidence or {})


def outcome_kind(o):
    return "success" if o == SUCCESS or (isinstance(o, tuple) and o[0] == "success") else "dlq"


def find_key(obj, key):
    """Every value of `key` anywhere inside a JSON value."""
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == key:
                out.append(v)
            out.extend(find_key(v, key))
    elif isinstance(obj, list):
        for v in obj:
            out.extend(find_key(v, key))
    return out


ISO_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def check_dlq_copy(got, orig, code, cls, attempt, evidence=None):
    """Problems (strings) with one DLQ copy of a valid envelope; [] when fine."""
    p = []
    mid = orig.key
    exp_rk = "%s.%s" % (cls, code)
    if got.routing_key != exp_rk:
        p.append("routing key %r, expected %r" % (got.routing_key, exp_rk))
    h = got.headers
    for name, want in (("x-dlqd-message-id", mid), ("x-dlqd-error-code", code),
                       ("x-dlqd-error-class", cls), ("x-dlqd-attempt", attempt)):
        if name not in h:
            p.append("header %s missing" % name)
        elif str(h[name]) != str(want):
            p.append("header %s=%r, expected %r" % (name, h[name], want))
    try:
        orig_env = json.loads(orig.body)
    except ValueError:
        orig_env = {}
    if "trace_id" in orig_env and str(h.get("x-dlqd-trace-id")) != orig_env["trace_id"]:
        p.append("header x-dlqd-trace-id=%r, expected %r" % (h.get("x-dlqd-trace-id"),
                                                             orig_env["trace_id"]))
    if got.props.delivery_mode != 2:
        p.append("delivery_mode %r, expected 2 (persistent like the original)" % got.props.delivery_mode)
    if not h.get("x-dlqd-dead-lettered-at"):
        p.append("header x-dlqd-dead-lettered-at missing")
    for k, v in (orig.headers or {}).items():
        if h.get(k) != _norm(v):
            p.append("original header %s=%r became %r" % (k, v, h.get(k)))
    for k, v in orig.props.items():
        if getattr(got.props, k, None) != v:
            p.append("property %s=%r became %r" % (k, v, getattr(got.props, k, None)))
    try:
        body = json.loads(got.body)
    except ValueError as e:
        return p + ["body is not JSON: %s" % e]
    if not isinstance(body, dict):
        return p + ["body is not an object"]
    for k, want in (("message_id", mid), ("error_code", code), ("error_class", cls),
                    ("attempt", attempt)):
        if body.get(k) != want:
            p.append("body %s=%r, expected %r" % (k, body.get(k), want))
    if "payload" in orig_env and body.get("payload") != orig_env["payload"]:
        p.append("payload changed")
    if not isinstance(body.get("dead_lettered_at"), str) or not ISO_RE.match(body["dead_lettered_at"]):
        p.append("dead_lettered_at %r is not an RFC 3339 time" % body.get("dead_lettered_at"))
    le = body.get("last_error")
    if not isinstance(le, dict):
        p.append("last_error missing")
    else:
        for k, v in (evidence or {}).items():
            if k == "_errors_min":  # checked with the history below
                continue
            if k == "_contains":  # a substring anywhere in last_error
                if v not in json.dumps(le, ensure_ascii=False):
                    p.append("last_error does not contain %r: %s" % (v, json.dumps(le)[:300]))
                continue
            vals = find_key(le, k)
            if callable(v):
                if not any(v(x) for x in vals):
                    p.append("last_error has no matching %s (got %r)" % (k, vals))
            elif v not in vals and str(v) not in [str(x) for x in vals]:
                p.append("last_error.%s is %r, expected %r" % (k, vals, v))
    errs = body.get("errors")
    if not isinstance(errs, list) or not errs:
        p.append("errors history missing or empty")
    elif len(errs) > 10:
        p.append("errors history has %d entries (unbounded?)" % len(errs))
    elif isinstance(attempt, int) and len(errs) > attempt + 1:
        # At most one entry per failed try (an exhausted copy may add one more).
        p.append("errors history has %d entries for attempt %d" % (len(errs), attempt))
    elif len(errs) < (evidence or {}).get("_errors_min", 1):
        p.append("errors history has %d entries, expected at least %d" %
                 (len(errs), evidence["_errors_min"]))
    return p


def check_invalid_copy(got, orig):
    p = []
    if got.body != orig.body:
        p.append("body changed")
    h = got.headers
    if h.get("x-dlqd-error-code") != "INVALID_ENVELOPE":
        p.append("x-dlqd-error-code=%r" % h.get("x-dlqd-error-code"))
    if h.get("x-dlqd-error-class") != "NON_RETRYABLE":
        p.append("x-dlqd-error-class=%r" % h.get("x-dlqd-error-class"))
    if not h.get("x-dlqd-error-detail"):
        p.append("x-dlqd-error-detail missing")
    if got.routing_key != "NON_RETRYABLE.INVALID_ENVELOPE":
        p.append("routing key %r" % got.routing_key)
    for k, v in (orig.headers or {}).items():
        if h.get(k) != _norm(v):
            p.append("original header %s=%r became %r" % (k, v, h.get(k)))
    for k, v in orig.props.items():
        if getattr(got.props, k, None) != v:
            p.append("property %s=%r became %r" % (k, v, getattr(got.props, k, None)))
    return p


class Report:
    def __init__(self):
        self.lost = []
        self.misrouted = []
        self.wrong = []
        self.unexpected = []
        self.duplicates = 0
        self.counts = {}

    @property
    def ok(self):
        return not (self.lost or self.misrouted or self.wrong or self.unexpected)

    def text(self, limit=30):
        out = ["accounting: %s" % ", ".join("%s=%d" % kv for kv in sorted(self.counts.items())),
               "  lost=%d misrouted=%d wrong=%d unexpected=%d duplicates=%d" %
               (len(self.lost), len(self.misrouted), len(self.wrong), len(self.unexpected),
                self.duplicates)]
        for title, items in (("LOST", self.lost), ("MISROUTED", self.misrouted),
                             ("WRONG", self.wrong), ("UNEXPECTED", self.unexpected)):
            for it in items[:limit]:
                out.append("  %s %s" % (title, it))
            if len(items) > limit:
                out.append("  ... and %d more %s" % (len(items) - limit, title))
        return "\n".join(out)


def account(msgs, expected, successes, dlq_msgs):
    """
    msgs: the published Msg list (key = message_id, or a label for raw bodies);
    expected: key -> success() / dlq(...) / "invalid" (INVALID_ENVELOPE, raw);
    successes: message_id -> [attempts answered with success];
    dlq_msgs: every Got read from <q>.dlq.
    """
    r = Report()
    by_key = {m.key: m for m in msgs}
    raw_by_body = {m.body: m.key for m in msgs if expected.get(m.key) == "invalid"}
    copies = {}
    for g in dlq_msgs:
        key = None
        mid = g.header("x-dlqd-message-id")
        if g.body in raw_by_body:
            key = raw_by_body[g.body]
        elif mid in expected and expected[mid] != "invalid":
            key = mid
        else:
            try:
                b = json.loads(g.body)
                if isinstance(b, dict) and b.get("message_id") in expected:
                    key = b["message_id"]
            except ValueError:
                pass
        if key is None:
            r.unexpected.append("DLQ message not published by this test or altered: %r" % g)
            continue
        copies.setdefault(key, []).append(g)

    for key, exp in expected.items():
        kind = "invalid" if exp == "invalid" else outcome_kind(exp)
        r.counts[kind] = r.counts.get(kind, 0) + 1
        succ = successes.get(key, []) if kind != "invalid" else []
        cps = copies.get(key, [])
        desc = lambda g: "%s/%s attempt %s" % (g.header("x-dlqd-error-code"),
                                                g.header("x-dlqd-error-class"),
                                                g.header("x-dlqd-attempt"))
        if kind == "success":
            want_attempt = exp[1] if isinstance(exp, tuple) else None
            if not succ and not cps:
                r.lost.append("%s: expected success, never succeeded and not in the DLQ" % key)
            elif not succ:
                r.misrouted.append("%s: expected success, dead-lettered as %s" % (key, desc(cps[0])))
            elif cps:
                r.misrouted.append("%s: succeeded but also dead-lettered as %s" % (key, desc(cps[0])))
            elif want_attempt is not None and want_attempt not in succ:
                r.wrong.append("%s: succeeded at attempt(s) %s, expected %s" % (key, succ, want_attempt))
            r.duplicates += max(0, len(succ) - 1)
        elif kind == "invalid":
            if not cps:
                r.lost.append("%s: invalid envelope not in the DLQ byte-identical" % key)
            else:
                pr = check_invalid_copy(cps[0], by_key[key])
                if pr:
                    r.wrong.append("%s: %s" % (key, "; ".join(pr)))
            r.duplicates += max(0, len(cps) - 1)
        else:
            _, code, cls, attempt, evidence = exp
            if not cps:
                if succ:
                    r.misrouted.append("%s: expected DLQ %s/%s, succeeded at attempt(s) %s" %
                                       (key, code, cls, succ))
                else:
                    r.lost.append("%s: expected in DLQ as %s/%s attempt %s, not there" %
                                  (key, code, cls, attempt))
            else:
                pr = check_dlq_copy(cps[0], by_key[key], code, cls, attempt, evidence)
                if pr:
                    r.wrong.append("%s: %s" % (key, "; ".join(pr)))
                if succ:
                    r.misrouted.append("%s: dead-lettered but also succeeded" % key)
            r.duplicates += max(0, len(cps) - 1)
    return r


# --------------------------------------------------------------------------
# unittest glue

class DlqdTestCase(unittest.TestCase):
    """Gives each test self.ctx and cleans up (processes, queues) afterwards."""

    def setUp(self):
        self.ctx = Ctx(self._testMethodName.replace("test_", "", 1))
        self.addCleanup(self._cleanup)

    def _cleanup(self):
        self.ctx.cleanup()
        for d in self.ctx.daemons:
            errs = d.sanitizer_errors()
            if errs:
                self.fail("sanitizer errors in dlqd's log %s:\n%s" % (d.log_path, "\n".join(errs[:20])))

    def run(self, result=None):
        if result is None:
            result = self.defaultTestResult()
        before = len(result.failures) + len(result.errors)
        super().run(result)
        ctx = getattr(self, "ctx", None)
        if ctx is None:
            return result
        failed = len(result.failures) + len(result.errors) > before
        if failed:
            note("FAILED %s; files kept in %s" % (self.id(), ctx.dir))
            for d in ctx.daemons:
                for _, p in d.runs:
                    sys.stderr.write("---- tail of %s\n%s\n" % (p, _tail(p, 30)))
        elif not os.environ.get("DLQD_TEST_KEEP"):
            shutil.rmtree(ctx.dir, ignore_errors=True)
        return result

    # -- convenience
    def assertAllAccounted(self, msgs, expected, successes=None):
        """Drains <q>.dlq and checks every message: succeeded downstream
        (successes, default the first stub's) or in the DLQ as expected."""
        c = self.ctx
        copies = c.broker.get_all(c.dlq)
        done = successes if successes is not None else c.stub.successes()
        report = account(msgs, expected, done, copies)
        self.assertAccounted(report)
        return report, copies

    def assertStopsCleanly(self, d):
        d.assert_alive("at the end")
        rc = d.stop()
        self.assertEqual(rc, 0, "dlqd exit status %s after SIGTERM" % rc)

    def assertAccounted(self, report, allow_duplicates=True):
        note(report.text(limit=10))
        if not report.ok:
            self.fail("message accounting failed\n" + report.text())
        if not allow_duplicates and report.duplicates:
            self.fail("%d duplicate deliveries" % report.duplicates)


def check_environment(need_broker=True):
    problems = []
    if pika is None:
        problems.append("python3-pika is not installed for %s" % sys.executable)
    if not os.access(DLQD_BIN, os.X_OK):
        problems.append("dlqd binary not found: %s (set DLQD_BIN or DLQD_BUILD_DIR)" % DLQD_BIN)
    if need_broker and pika is not None:
        b = Broker()
        if not b.reachable():
            problems.append("RabbitMQ not reachable at %s; start it with `%s start` "
                            "(DLQD_TEST_AMQP_PORT=%d)" % (AMQP_URL, BROKER_SH, AMQP_PORT))
        b.close()
    return problems


def main(need_broker=True, need_stub=True):
    """unittest.main with a clear summary and a non-zero exit on any failure."""
    name = os.path.splitext(os.path.basename(sys.argv[0]))[0]
    problems = check_environment(need_broker)
    if need_stub and not os.access(HTTPSTUB, os.X_OK):
        problems.append("dlqd-httpstub not found: %s (set DLQD_HTTPSTUB)" % HTTPSTUB)
    if problems:
        for p in problems:
            sys.stderr.write("%s: SETUP ERROR: %s\n" % (name, p))
        sys.stderr.write("%s: FAILED (environment)\n" % name)
        sys.exit(1)
    note("%s: dlqd=%s broker=%s%s" % (name, DLQD_BIN, AMQP_URL, " (ASan)" if IS_ASAN else ""))
    t0 = time.monotonic()
    prog = unittest.main(module="__main__", verbosity=2, exit=False)
    res = prog.result
    bad = len(res.failures) + len(res.errors)
    status = "PASSED" if res.wasSuccessful() else "FAILED"
    sys.stderr.write("%s: %s (%d run, %d failed, %d skipped) in %.1fs\n" %
                     (name, status, res.testsRun, bad, len(res.skipped), time.monotonic() - t0))
    sys.exit(0 if res.wasSuccessful() and res.testsRun > 0 else 1)


# --------------------------------------------------------------------------
# systemd's side of the protocols (issue 3): a NOTIFY_SOCKET the test owns,
# dlqd started with the environment systemd would give it.

class DatagramSocket:
    """An AF_UNIX datagram socket the test binds (what systemd or journald
    would listen on); a thread appends (monotonic time, parse(bytes)) to
    .messages. A datagram that comes as a memfd (SCM_RIGHTS, how big journal
    entries travel) is read from the fd."""

    def __init__(self, path, parse):
        import threading
        self.path = path
        self.parse = parse
        self.errors = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.settimeout(0.2)
        self.messages = []
        self._lock = threading.Lock()
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        import struct
        while not self._stop:
            try:
                data, anc, _, _ = self.sock.recvmsg(1 << 20, socket.CMSG_SPACE(16))
            except socket.timeout:
                continue
            except OSError:
                return
            t = time.monotonic()
            for level, typ, payload in anc:
                if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                    with os.fdopen(struct.unpack("i", payload[:4])[0], "rb") as f:
                        data = f.read()
            try:
                parsed = self.parse(data)
            except Exception as e:  # reported by the test, not lost in a thread
                self.errors.append("%r: %r" % (e, data[:200]))
                continue
            with self._lock:
                self.messages.append((t, parsed))

    def snapshot(self):
        with self._lock:
            return list(self.messages)

    def close(self):
        self._stop = True
        self._thread.join(2)
        self.sock.close()


def _parse_notify(data):
    pairs = []
    for line in data.decode(errors="replace").split("\n"):
        if line:
            k, _, v = line.partition("=")
            pairs.append((k, v))
    return pairs


class NotifySocket(DatagramSocket):
    """NOTIFY_SOCKET for sd_notify(): .messages holds (time, [(KEY, VALUE)])
    in arrival order."""

    def __init__(self, path):
        super().__init__(path, _parse_notify)

    def items(self, key=None):
        """[(time, KEY, VALUE)] in order, for one key or all."""
        msgs = self.snapshot()
        return [(t, k, v) for t, pairs in msgs for k, v in pairs if key is None or k == key]

    def sequence(self, keys=("READY", "RELOADING", "STOPPING")):
        """The state changes in order, e.g. ['READY=1', 'STOPPING=1']."""
        return ["%s=%s" % (k, v) for _, k, v in self.items() if k in keys]

    def wait(self, ctx, key, value=None, count=1, timeout=20, pred=None):
        """Until `count` KEY(=value) items arrived; returns them."""
        def ok():
            got = [i for i in self.items(key) if (value is None or i[2] == value) and
                   (pred is None or pred(i[2]))]
            return got if len(got) >= count else None
        return ctx.wait_until(ok, timeout, "%d %s%s on NOTIFY_SOCKET" %
                              (count, key, "=" + value if value else ""), interval=0.05,
                              check_alive=False)


class ServiceDlqd(Dlqd):
    """dlqd with the environment a systemd service gets. env: name -> value,
    or name -> fn(log_file) for values that depend on stderr (JOURNAL_STREAM
    is its dev:ino). wrap: an argv prefix that must exec dlqd in the same
    process (e.g. `unshare -m sh -c '... exec "$0" "$@"'`)."""

    SYSTEMD_ENV = ("JOURNAL_STREAM", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID",
                   "CREDENTIALS_DIRECTORY")

    def __init__(self, ctx, config_path, env=None, wrap=None):
        self.extra_env = dict(env or {})
        self.wrap = list(wrap or [])
        self.log_prefix = "dlqd-svc%d" % len(ctx.daemons)  # one test may start several
        super().__init__(ctx, config_path)

    def start(self):
        path = os.path.join(self.ctx.dir, "%s.%d.log" % (self.log_prefix, len(self.runs)))
        logf = open(path, "wb")
        env = {k: v for k, v in os.environ.items() if k not in self.SYSTEMD_ENV}
        for k, v in self.extra_env.items():
            env[k] = v(logf) if callable(v) else str(v)
        proc = subprocess.Popen(self.wrap + [DLQD_BIN, "--config", self.config_path],
                                stdout=logf, stderr=logf, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
        logf.close()
        self.runs.append((proc, path))
        note("dlqd started as a service (pid %d, env %s, log %s)" %
             (proc.pid, sorted(self.extra_env), path))
        return proc


def start_service_dlqd(ctx, config=None, wait_ready=True, notify=True, **kw):
    """Starts a ServiceDlqd; with notify, a NotifySocket at ctx.path('notify')
    (closed at cleanup) is its NOTIFY_SOCKET and is returned as d.notify."""
    ns = None
    env = dict(kw.pop("env", None) or {})
    if notify:
        ns = NotifySocket(ctx.path("notify.%d" % len(ctx.daemons)))
        env["NOTIFY_SOCKET"] = ns.path
    d = ServiceDlqd(ctx, config or ctx.path("dlqd.conf"), env=env, **kw)
    d.notify = ns
    ctx.daemons.append(d)
    if wait_ready:
        ctx.wait_ready(d)
    return d


def close_notify_sockets(ctx):
    for d in ctx.daemons:
        if getattr(d, "notify", None) is not None:
            d.notify.close()
