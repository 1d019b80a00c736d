"""
dlqctl_util: helpers of the dlqctl integration tests (test_dlqctl_*.py).

build_dlq() fills <queue>.dlq quickly with copies shaped exactly like the
ones dlqd publishes (src/common/copy.c): valid
envelopes with last_error, errors[], dead_lettered_at and the x-dlqd-*
headers, and invalid bodies kept byte for byte with INVALID_ENVELOPE and
x-dlqd-error-detail. It returns a Python model of every message, in queue
order, that the tests compare dlqctl's answers with.
"""
import json
import os
import random
import subprocess
import time

import dlqtest
from dlqtest import Msg, pika

CTL = os.environ.get("DLQCTL_BIN") or os.path.join(dlqtest.BUILD_DIR, "dlqctl")
CTL_NAME = os.path.basename(CTL)[:15]  # as /proc/PID/comm shows it

# (error_code, error_class, attempt) of the valid copies, with weights.
KINDS = [
    ("RETRY_EXHAUSTED", "PERSISTENT", 4, 30),
    ("INVALID_PAYLOAD", "NON_RETRYABLE", 1, 25),
    ("AUTH_REVOKED", "NON_RETRYABLE", 1, 10),
    ("QUOTA_EXCEEDED", "NON_RETRYABLE", 1, 10),
    ("UNKNOWN_ERROR", "PERSISTENT", 1, 15),
]
SCHEMAS = ["v1", "v2", None]
# Durations the tests filter by: no message is dead-lettered within 10 min of them.
AGE_BOUNDARIES = (3600, 86400, 3 * 86400)


def rfc3339(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def run_ctl(config, *args, timeout=120, env=None):
    """Runs dlqctl --config CONFIG ARGS; returns (status, stdout, stderr)."""
    e = dict(os.environ)
    e.pop("JOURNAL_STREAM", None)
    e.update(env or {})
    p = subprocess.run([CTL, "--config", config] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=dlqtest.scaled(timeout), env=e,
                       stdin=subprocess.DEVNULL)
    err = p.stderr.decode(errors="replace")
    bad = [l for l in err.splitlines() if dlqtest.SANITIZER_RE.search(l)]
    if bad:
        raise AssertionError("sanitizer errors from dlqctl %s:\n%s" % (" ".join(args), err))
    return p.returncode, p.stdout.decode(errors="replace"), err


def ctl_json_lines(config, *args, **kw):
    rc, out, err = run_ctl(config, *args, **kw)
    if rc != 0:
        raise AssertionError("dlqctl %s exited %d: %s" % (" ".join(args), rc, err))
    return [json.loads(l) for l in out.splitlines() if l.strip()]


def dlq_copy(mid, code, cls, attempt, dead_at, schema=None, seq=0, payload=None):
    """A valid envelope's DLQ copy, as dlqd publishes it."""
    le = {"error_code": code, "error_class": cls, "at": rfc3339(dead_at), "attempt": attempt,
          "kind": "http", "http_status": 400 if cls == "NON_RETRYABLE" else 500,
          "evidence": "bad request", "evidence_truncated": False, "duration_ms": 3}
    if code == "RETRY_EXHAUSTED":
        le.update(cause_code="UPSTREAM_TIMEOUT", cause_class="TRANSIENT")
    env = {"message_id": mid, "trace_id": "trc-" + mid}
    if schema:
        env["schema_version"] = schema
    env.update({"attempt": attempt, "first_seen_at": rfc3339(dead_at - 60),
                "error_code": code, "error_class": cls,
                "payload": payload if payload is not None else {"job": mid},
                "last_error": le, "errors": [le], "dead_lettered_at": rfc3339(dead_at)})
    headers = {"x-dlqd-message-id": mid, "x-dlqd-trace-id": "trc-" + mid,
               "x-dlqd-attempt": attempt, "x-dlqd-error-code": code,
               "x-dlqd-error-class": cls, "x-dlqd-dead-lettered-at": rfc3339(dead_at),
               "x-dlqd-publish-seq": seq}
    return Msg(env, key=mid, headers=headers, content_type="application/json")


def invalid_copy(raw, label, dead_at, with_id, seq=0):
    """An invalid body's DLQ copy: the bytes unchanged, the reason in a header."""
    headers = {"x-dlqd-attempt": 1, "x-dlqd-error-code": "INVALID_ENVELOPE",
               "x-dlqd-error-class": "NON_RETRYABLE", "x-dlqd-dead-lettered-at": rfc3339(dead_at),
               "x-dlqd-error-detail": "invalid JSON at line 1 column 1", "x-dlqd-publish-seq": seq}
    props = {"message_id": label} if with_id else {}
    return Msg(raw, key=label, headers=headers, **props)


def build_dlq(ctx, n, seed=1, now=None, invalid_every=25, schemas=SCHEMAS):
    """Publishes n mixed DLQ copies to ctx.dlq (declared like dlqd does);
    returns (msgs, model) in queue order. model items: dict(key, id, code,
    cls, schema, dead_at, valid, body)."""
    rnd = random.Random(seed)
    now = now or time.time()
    weights = [k[3] for k in KINDS]
    msgs, model = [], []
    for i in range(n):
        # Ages from 1 minute to 10 days, spread so --older-than/--newer-than
        # boundaries fall between messages, never on them.
        age = 60 + rnd.randrange(10 * 86400)
        while any(abs(age - b) < 600 for b in AGE_BOUNDARIES):
            age = 60 + rnd.randrange(10 * 86400)
        dead_at = int(now) - age
        if i % invalid_every == invalid_every - 1:
            label = "raw-%05d" % i
            with_id = i % 2 == 0
            raw = b"not json " + label.encode() + (b" \xff\xfe" if i % 3 == 0 else b"")
            m = invalid_copy(raw, label, dead_at, with_id, seq=i)
            model.append(dict(key=label, id=label if with_id else "", code="INVALID_ENVELOPE",
                              cls="NON_RETRYABLE", schema=None, dead_at=dead_at, valid=False,
                              body=raw))
        else:
            code, cls, attempt, _ = rnd.choices(KINDS, weights)[0]
            schema = rnd.choice(schemas)
            mid = "m-%05d" % i
            m = dlq_copy(mid, code, cls, attempt, dead_at, schema=schema, seq=i)
            model.append(dict(key=mid, id=mid, code=code, cls=cls, schema=schema,
                              dead_at=dead_at, valid=True, body=m.body))
        msgs.append(m)
    publish_fast(ctx, ctx.dlq, msgs)
    return msgs, model


def declare_topology(ctx, queue_type="classic"):
    """The main queue and the DLQ, as dlqd declares them (durable)."""
    ctx.broker.declare_queue(ctx.q, queue_type=queue_type)
    ctx.broker.declare_queue(ctx.dlq, queue_type=queue_type)


def publish_fast(ctx, queue, msgs, queue_type="classic"):
    """Publishes in order on one channel, with confirms."""
    declare_topology(ctx, queue_type)
    conn = pika.BlockingConnection(ctx.broker._params())
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        for m in msgs:
            ch.basic_publish(exchange="", routing_key=queue, body=m.body,
                             properties=m.properties(), mandatory=True)
    finally:
        conn.close()
    ctx.wait_until(lambda: ctx.broker.depth(queue) >= len(msgs), 60,
                   "%d messages in %s" % (len(msgs), queue), check_alive=False)


def key_of(got):
    """The model key of a message read back with pika."""
    mid = got.header("x-dlqd-message-id")
    if mid:
        return mid
    if got.body.startswith(b"not json "):
        return got.body.decode("latin-1").split(" ")[2]
    return ""


def dlq_keys(ctx, queue=None):
    """Every message key of the queue, in order, leaving the queue as it was.
    Reads with a consumer and closes the connection without acking, as
    dlqctl does: a basic.nack(multiple, requeue) of thousands of messages
    keeps a classic queue busy for many seconds in RabbitMQ 3.10, a close
    does not."""
    queue = queue or ctx.dlq
    n = ctx.broker.depth(queue)
    out = []
    conn = pika.BlockingConnection(ctx.broker._params())
    try:
        ch = conn.channel()
        for method, props, body in ch.consume(queue, inactivity_timeout=dlqtest.scaled(5)):
            if method is None:
                break
            out.append(key_of(dlqtest.Got(method, props, body)))
            if len(out) >= n:
                break
    finally:
        conn.close()
    ctx.wait_until(lambda: ctx.broker.depth(queue) == n, 30,
                   "%s back at %d ready messages" % (queue, n), check_alive=False)
    return out


def model_match(m, now, codes=None, classes=None, ids=None, schemas=None, older=None, newer=None):
    if codes and m["code"] not in codes:
        return False
    if classes and m["cls"] not in classes:
        return False
    if ids and m["id"] not in ids:
        return False
    if schemas:
        if not m["valid"]:
            return False
        if (m["schema"] or "none") not in schemas:
            return False
    age = now - m["dead_at"]
    if older is not None and age < older:
        return False
    if newer is not None and age >= newer:
        return False
    return True


def ctl_config(ctx, extra=None):
    """A dlqd config for ctx (the one dlqd and dlqctl share)."""
    if not ctx.stubs:
        ctx.start_stub()
    return ctx.write_config(extra=extra)
