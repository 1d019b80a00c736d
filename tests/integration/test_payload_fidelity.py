"""
Payload fidelity (design.md Part 1): the payload reaches the handler, and
every retry and DLQ copy, as the exact bytes the producer wrote.

A seeded generator writes random JSON payloads (nested objects and arrays,
integers beyond 64 bits, -0, 1E400, decimals a double cannot hold, every
string escape, raw UTF-8, random whitespace between tokens, keys in no
particular order); each is the "payload" of an ordinary envelope. Some fail
at the downstream (transiently, or for good) so retries and DLQ copies
happen. Then, byte for byte:
  (a) http: the request body dlqd-httpstub received (--body-log) on every
      attempt is the payload's bytes;
  (b) exec: the stdin exec_job.py read (DLQD_TEST_LOG_STDIN) is too;
  (c) retry copies: a tap queue bound to <q>.retry with every lane's routing
      key sees each retry copy; the value of its top-level "payload" key,
      found by the byte scanner below (never re-serialised), is the bytes;
  (d) DLQ copies: likewise.
Every message is accounted for (dlqtest.account). Hand-written golden
payloads go through the same checks, each as a success, a retry and a DLQ
copy, so a failure names the case.
"""
import base64
import json
import os
import random
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dlqtest  # noqa: E402
from dlqtest import HarnessError, Msg, dlq, note, success  # noqa: E402

# --------------------------------------------------------------------------
# A byte-exact JSON scanner: finds where a value starts and ends, decodes
# nothing but object keys.

_WS = b" \t\r\n"
_SCALAR_RE = re.compile(rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|true|false|null")


class ScanError(ValueError):
    pass


def _skip_ws(b, i):
    while i < len(b) and b[i] in _WS:
        i += 1
    return i


def _skip_string(b, i):
    if i >= len(b) or b[i] != 0x22:
        raise ScanError("string expected at %d" % i)
    i += 1
    while i < len(b):
        c = b[i]
        if c == 0x22:
            return i + 1
        if c == 0x5C:  # the escaped byte is never a quote we could stop at
            i += 2
        elif c < 0x20:
            raise ScanError("raw control byte in a string at %d" % i)
        else:
            i += 1
    raise ScanError("unterminated string")


def _members(b, i):
    """Yields (key_start, key_end, value_start, value_end) of the object at i;
    the last item is (None, end, None, None)."""
    i = _skip_ws(b, i + 1)
    if i < len(b) and b[i] == 0x7D:
        yield (None, i + 1, None, None)
        return
    while True:
        i = _skip_ws(b, i)
        ks = i
        i = _skip_string(b, i)
        ke = i
        i = _skip_ws(b, i)
        if i >= len(b) or b[i] != 0x3A:
            raise ScanError("':' expected at %d" % i)
        vs = _skip_ws(b, i + 1)
        ve = _skip_value(b, vs)
        yield (ks, ke, vs, ve)
        i = _skip_ws(b, ve)
        if i < len(b) and b[i] == 0x2C:
            i += 1
            continue
        if i < len(b) and b[i] == 0x7D:
            yield (None, i + 1, None, None)
            return
        raise ScanError("',' or '}' expected at %d" % i)


def _skip_value(b, i):
    if i >= len(b):
        raise ScanError("value expected at the end")
    c = b[i]
    if c == 0x7B:
        for item in _members(b, i):
            end = item[1]
        return end
    if c == 0x5B:
        i = _skip_ws(b, i + 1)
        if i < len(b) and b[i] == 0x5D:
            return i + 1
        while True:
            i = _skip_ws(b, _skip_value(b, _skip_ws(b, i)))
            if i < len(b) and b[i] == 0x2C:
                i += 1
                continue
            if i < len(b) and b[i] == 0x5D:
                return i + 1
            raise ScanError("',' or ']' expected at %d" % i)
    if c == 0x22:
        return _skip_string(b, i)
    m = _SCALAR_RE.match(b, i)
    if not m:
        raise ScanError("no JSON value at %d: %r" % (i, b[i:i + 20]))
    return m.end()


def top_level_value(body, key):
    """The exact bytes of `key`'s value in the JSON object `body`; raises
    ScanError unless body is one object holding that key exactly once."""
    i = _skip_ws(body, 0)
    if i >= len(body) or body[i] != 0x7B:
        raise ScanError("not a JSON object")
    found = []
    end = None
    for ks, ke, vs, ve in _members(body, i):
        if ks is None:
            end = ke
        elif json.loads(body[ks:ke]) == key:
            found.append(body[vs:ve])
    if _skip_ws(body, end) != len(body):
        raise ScanError("bytes after the object")
    if len(found) != 1:
        raise ScanError("%d %r keys" % (len(found), key))
    return found[0]


# --------------------------------------------------------------------------
# The generator

WS_CHOICES = [b" ", b"\n", b"\t", b"\r\n", b"  ", b"\n\t\t", b" \n ", b"\t \r\n"]
NUMBERS = [b"-0", b"0", b"-0.0", b"0.0", b"1E400", b"-1E400", b"1e-400", b"1E+2", b"1e-7",
           b"1e-07", b"1.0", b"1.50", b"100e-2", b"0.1000000000000000055511151231257827",
           b"123456789012345678901234567890", b"-123456789012345678901234567890",
           b"9223372036854775807", b"9223372036854775808", b"-9223372036854775808",
           b"-9223372036854775809", b"18446744073709551615", b"18446744073709551616",
           b"2.2250738585072011e-308", b"4.9e-324", b"1.7976931348623157e309",
           b"123456789.123456789123456789", b"3.141592653589793238462643383279"]
ESCAPES = [rb"\"", rb"\\", rb"\/", rb"\b", rb"\f", rb"\n", rb"\r", rb"\t", rb"\u00e9",
           rb"\u00E9", rb"\ud83d\ude00", rb"\uD83D\uDE00", rb"\u2028", rb"\u0041", rb"\u001f",
           rb"\u20ac"]
RAW_UTF8 = ["é", "😀", "中文", "\u2028", "ß", "Ω", "\u00a0", "\x7f"]
ASCII = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _-.:,{}[]"


class Gen:
    def __init__(self, seed):
        self.rnd = random.Random(seed)

    def ws(self):
        return b"" if self.rnd.random() < 0.6 else self.rnd.choice(WS_CHOICES)

    def number(self):
        r = self.rnd.random()
        if r < 0.35:
            return self.rnd.choice(NUMBERS)
        if r < 0.55:
            return str(self.rnd.randint(-100000, 100000)).encode()
        if r < 0.75:  # an integer beyond 64 bits
            digits = str(self.rnd.randint(1, 9)) + "".join(
                self.rnd.choice("0123456789") for _ in range(self.rnd.randint(19, 60)))
            return (("-" if self.rnd.random() < 0.3 else "") + digits).encode()
        # a long decimal, sometimes with an exponent; trailing zeros kept
        s = "%s%d.%s" % ("-" if self.rnd.random() < 0.3 else "", self.rnd.randint(0, 99999),
                         "".join(self.rnd.choice("0123456789")
                                 for _ in range(self.rnd.randint(1, 40))))
        if self.rnd.random() < 0.4:
            s += "%s%s%d" % (self.rnd.choice("eE"), self.rnd.choice(["", "+", "-"]),
                             self.rnd.randint(0, 500))
        return s.encode()

    def string(self, prefix=b""):
        out = [b'"', prefix]
        for _ in range(self.rnd.randint(0, 8)):
            r = self.rnd.random()
            if r < 0.4:
                out.append("".join(self.rnd.choice(ASCII)
                                   for _ in range(self.rnd.randint(1, 12))).encode())
            elif r < 0.7:
                out.append(self.rnd.choice(ESCAPES))
            else:
                out.append(self.rnd.choice(RAW_UTF8).encode())
        out.append(b'"')
        return b"".join(out)

    def value(self, depth):
        r = self.rnd.random()
        if depth < 5 and r < 0.2:
            return self.obj(depth + 1, self.rnd.randint(0, 5))
        if depth < 5 and r < 0.35:
            return self.array(depth + 1)
        if r < 0.6:
            return self.string()
        if r < 0.9:
            return self.number()
        return self.rnd.choice([b"true", b"false", b"null"])

    def array(self, depth):
        n = self.rnd.randint(0, 5)
        if n == 0:
            return b"[" + self.ws() + b"]"
        items = [self.ws() + self.value(depth) + self.ws() for _ in range(n)]
        return b"[" + b",".join(items) + b"]"

    def members(self, depth, n):
        """n members with distinct keys: "k<i>_..." cannot collide even after
        decoding escapes, and never is "stub"."""
        order = list(range(n))
        self.rnd.shuffle(order)  # keys in no sorted order
        return [self.ws() + self.string(b"k%d_" % i) + self.ws() + b":" + self.ws() +
                self.value(depth) + self.ws() for i in order]

    def obj(self, depth, n, extra=None):
        mem = self.members(depth, n)
        if extra is not None:
            mem.insert(self.rnd.randint(0, len(mem)), self.ws() + extra + self.ws())
        if not mem:
            return b"{" + self.ws() + b"}"
        return b"{" + b",".join(mem) + b"}"

    def stub_member(self, fields):
        """ "stub":{...} for the downstream, integers only, with whitespace."""
        parts = []
        for k, v in fields:
            vb = b'"%s"' % v.encode() if isinstance(v, str) else str(v).encode()
            parts.append(self.ws() + b'"%s"' % k.encode() + self.ws() + b":" + self.ws() + vb +
                         self.ws())
        return b'"stub"' + self.ws() + b":" + self.ws() + b"{" + b",".join(parts) + b"}"

    def payload(self, stub_fields=None):
        extra = self.stub_member(stub_fields) if stub_fields else None
        return self.obj(1, self.rnd.randint(1, 8), extra)


def with_stub(payload, member):
    """A golden payload with a "stub" member put first, the rest untouched."""
    if member is None:
        return payload
    i = _skip_ws(payload, 0)
    assert payload[i:i + 1] == b"{"
    rest = payload[i + 1:]
    sep = b"" if rest.lstrip(_WS).startswith(b"}") else b","
    return payload[:i + 1] + member + sep + rest


def envelope_bytes(mid, payload, rnd):
    """An ordinary envelope around the payload bytes; where "payload" sits and
    the whitespace around its value vary, its own bytes never do."""
    fields = [b'"message_id":"%s"' % mid.encode(), b'"trace_id":"trc-%s"' % mid.encode()]
    sep = rnd.choice([b"", b" ", b"\n  "])
    fields.insert(rnd.randint(0, 2), b'"payload":' + sep + payload)
    return b"{" + b",".join(fields) + rnd.choice([b"", b"\n"]) + b"}"


# Hand-written payloads a double or an int64 cannot hold, escapes, key order
# and whitespace. Each is sent as a success, a transient failure and a
# permanent one.
GOLDEN = [
    ("int_beyond_64_bits", b'{"n":123456789012345678901234567890,"neg":-98765432109876543210987654321}'),
    ("int64_edges", b'{"max":9223372036854775807,"over":9223372036854775808,'
                    b'"u64over":18446744073709551616,"min_minus_1":-9223372036854775809}'),
    ("decimal_beyond_double", b'{"d":0.1000000000000000055511151231257827,"tiny":1e-7,'
                              b'"huge":1E400,"negzero":-0,"trailing":2.50,"exp":1E+2}'),
    ("escapes", rb'{"s":"\u00e9\/\ud83d\ude00\"\\\b\f\n\r\t","upper":"\u00E9\uD83D\uDE00",'
                rb'"line_sep":"\u2028","ctl":"\u001f"}'),
    ("escaped_nul", rb'{"s":"a\u0000b"}'),
    ("raw_utf8", '{"s":"é😀中文\u2028","k€y":"\x7f"}'.encode()),
    ("key_order", b'{"zebra":1,"apple":2,"mango":{"y":1,"b":2,"a":3},"Apple":4,"_":0}'),
    ("whitespace", b'{ \n\t"a" :\r\n [ 1 ,\t2 , { } , [ ] ] ,\n "b":\t"x" \n}'),
    ("empty_object", b"{}"),
    ("empty_with_space", b"{ \n }"),
    ("deep", b'{"a":[[[[{"b":[[{"c":[1.10,2.200e+3,-0.0]}]]}]]]]}'),
]

# Lanes: the same integer grid as src/common/backoff.c (LANE_MIN_MS, x26/25).
LANE_MIN_MS = 100


def lane_grid(up_to_ms):
    x, half, out = LANE_MIN_MS << 64, 1 << 63, []
    while True:
        lane = (x + half) >> 64
        out.append(lane)
        if lane > up_to_ms:
            return out
        x = x * 26 // 25


# --------------------------------------------------------------------------

class Fidelity(dlqtest.DlqdTestCase):
    """Each test publishes (mid, payload bytes, expected outcome, retries)."""

    def tap_retry_exchange(self):
        """A queue that receives a copy of every retry publish: bound to the
        retry exchange with each lane's routing key (the lane name) up to
        far above the test taxonomy's longest delay (2 s + 30 % jitter)."""
        c = self.ctx
        tap = c.q + ".tap"
        c.broker.declare_queue(tap)
        names = ["%s.retry.%d" % (c.q, ms) for ms in lane_grid(20000)]

        def bind_all(ch):
            for n in names:
                ch.queue_bind(queue=tap, exchange=c.retry_x, routing_key=n)
        c.broker._run(bind_all)
        return tap

    def run_case(self, items, successes, handler_bytes, settle_timeout):
        """items: [(mid, payload, outcome, n_retry_copies)]. successes():
        mid -> attempts; handler_bytes(): [(mid, attempt, bytes)]."""
        c = self.ctx
        tap = self.tap_retry_exchange()
        rnd = random.Random(7)
        payloads = {mid: p for mid, p, _, _ in items}
        msgs = [Msg(envelope_bytes(mid, p, rnd), key=mid) for mid, p, _, _ in items]
        expected = {mid: out for mid, _, out, _ in items}
        n_dlq = sum(1 for v in expected.values() if dlqtest.outcome_kind(v) == "dlq")
        note("publishing %d messages (%d bytes of payload; %d expected in the DLQ, "
             "%d retry copies)" % (len(msgs), sum(len(p) for p in payloads.values()), n_dlq,
                                   sum(r for _, _, _, r in items)))
        c.broker.publish(c.q, msgs)
        settle_error = None
        try:
            c.wait_settled(expected, successes, timeout=settle_timeout, stall=20)
        except HarnessError as e:  # still say which bytes changed: that is the finding
            settle_error = e

        problems = {"handler": [], "retry": [], "dlq": []}
        # (a)/(b): every attempt the handler saw.
        seen = {}
        for mid, attempt, got in handler_bytes():
            if mid not in payloads:
                problems["handler"].append("%r: a handler call for a message not published" % mid)
                continue
            seen.setdefault(mid, set()).add(attempt)
            if got != payloads[mid]:
                problems["handler"].append("%s attempt %s: handler got %r, producer wrote %r" %
                                           (mid, attempt, got[:300], payloads[mid][:300]))
        never = sorted(set(payloads) - set(seen))
        if never:
            problems["handler"].append("%d messages never reached the handler, e.g. %s" %
                                       (len(never), never[:5]))

        # (c)/(d): the copies' payload byte ranges.
        by_body = {m.body: m.key for m in msgs}

        def check_copy(kind, g):
            mid = g.header("x-dlqd-message-id")
            if mid is None and g.body in by_body:
                problems[kind].append("%s: a valid envelope dead-lettered as %s: %s" %
                                      (by_body[g.body], g.header("x-dlqd-error-code"),
                                       g.header("x-dlqd-error-detail")))
                return None
            if mid not in payloads:
                problems[kind].append("copy of an unknown message %r: %r" % (mid, g))
                return None
            try:
                got = top_level_value(g.body, "payload")
            except ScanError as e:
                problems[kind].append("%s: copy body: %s: %r" % (mid, e, g.body[:300]))
                return mid
            if got != payloads[mid]:
                problems[kind].append("%s attempt %s: copy holds %r, producer wrote %r" %
                                      (mid, g.header("x-dlqd-attempt"), got[:300],
                                       payloads[mid][:300]))
            return mid

        retry_copies = c.broker.get_all(tap)
        per_mid = {}
        for g in retry_copies:
            mid = check_copy("retry", g)
            if mid is not None:
                per_mid[mid] = per_mid.get(mid, 0) + 1
        short = [(mid, per_mid.get(mid, 0), n) for mid, _, _, n in items if per_mid.get(mid, 0) < n]
        if short:
            problems["retry"].append("%d messages with fewer retry copies than retries, "
                                     "e.g. (mid, copies, retries) %s" % (len(short), short[:5]))
        dlq_copies = c.broker.get_all(c.dlq, requeue=True)
        for g in dlq_copies:
            check_copy("dlq", g)
        note("checked %d handler calls, %d retry copies, %d DLQ copies byte for byte" %
             (sum(len(v) for v in seen.values()), len(retry_copies), len(dlq_copies)))

        bad = {k: v for k, v in problems.items() if v}
        if bad or settle_error:
            lines = []
            for k, v in bad.items():
                lines.append("%s: %d problems" % (k, len(v)))
                lines.extend("  " + x for x in v[:8])
            if settle_error:
                lines.append("not settled: %s" % settle_error)
            self.fail("payload fidelity:\n" + "\n".join(lines))
        report, _ = self.assertAllAccounted(msgs, expected, successes())
        self.assertEqual(report.counts.get("dlq", 0), n_dlq)


HTTP_DLQ_400 = dlq("INVALID_PAYLOAD", "NON_RETRYABLE", 1)
HTTP_DLQ_EXHAUSTED = dlq("RETRY_EXHAUSTED", "PERSISTENT", 4)
EXEC_DLQ_DATAERR = dlq("DATAERR", "NON_RETRYABLE", 1)


def http_plan(rnd):
    """(stub fields, outcome, retry copies) for one http message."""
    r = rnd.random()
    if r < 0.55:
        return None, success(0), 0
    if r < 0.80:
        k = rnd.randint(1, 2)
        return [("op", "fail"), ("status", 503), ("times", k)], success(k), k
    if r < 0.85:
        return [("op", "fail"), ("status", 503)], HTTP_DLQ_EXHAUSTED, 3
    return [("op", "fail"), ("status", 400)], HTTP_DLQ_400, 0


def exec_plan(rnd):
    r = rnd.random()
    if r < 0.6:
        return None, success(0), 0
    if r < 0.85:
        return [("op", "exit"), ("code", 75), ("times", 1)], success(1), 1
    return [("op", "exit"), ("code", 65)], EXEC_DLQ_DATAERR, 0


N_HTTP = 2000
N_EXEC = 100  # each is a Python process: the slow part


class PayloadFidelity(Fidelity):
    def http_setup(self):
        c = self.ctx
        body_log = c.path("bodies.log")
        c.start_stub(args=["--body-log", body_log])
        c.write_config(prefetch=50, timeout="5s")
        c.start_dlqd()

        def handler_bytes():
            return [(r.get("message_id"), r.get("attempt"), base64.b64decode(r["body_b64"]))
                    for r in dlqtest.read_json_lines(body_log)]
        return c.stub.successes, handler_bytes

    def exec_setup(self):
        c = self.ctx
        cmd = c.exec_command().replace("/usr/bin/env ", "/usr/bin/env DLQD_TEST_LOG_STDIN=1 ", 1)
        c.write_config(handler="exec", command=cmd, prefetch=20, timeout="10s")
        c.start_dlqd()

        def handler_bytes():
            return [(r.get("message_id"), r.get("attempt"), base64.b64decode(r["stdin_b64"]))
                    for r in dlqtest.read_json_lines(c.exec_log)]
        return (lambda: dlqtest.exec_successes(c.exec_log)), handler_bytes

    def test_random_http(self):
        gen = Gen(9001)
        items = []
        for i in range(N_HTTP):
            stub, outcome, retries = http_plan(gen.rnd)
            items.append(("pf-%d" % i, gen.payload(stub), outcome, retries))
        successes, handler_bytes = self.http_setup()
        self.run_case(items, successes, handler_bytes, settle_timeout=120)

    def test_random_exec(self):
        gen = Gen(9002)
        items = []
        for i in range(N_EXEC):
            stub, outcome, retries = exec_plan(gen.rnd)
            items.append(("pfx-%d" % i, gen.payload(stub), outcome, retries))
        successes, handler_bytes = self.exec_setup()
        self.run_case(items, successes, handler_bytes, settle_timeout=120)

    def golden_items(self, fail_once, fail_for_good, dlq_outcome):
        def compact(fields):  # no whitespace of its own: a failure names the case
            return b'"stub":' + json.dumps(dict(fields), separators=(",", ":")).encode()
        items = []
        for name, p in GOLDEN:
            items.append(("g-ok-" + name, p, success(0), 0))
            items.append(("g-retry-" + name, with_stub(p, compact(fail_once)), success(1), 1))
            items.append(("g-dlq-" + name, with_stub(p, compact(fail_for_good)), dlq_outcome, 0))
        return items

    def test_golden_http(self):
        items = self.golden_items([("op", "fail"), ("status", 503), ("times", 1)],
                                  [("op", "fail"), ("status", 400)], HTTP_DLQ_400)
        successes, handler_bytes = self.http_setup()
        self.run_case(items, successes, handler_bytes, settle_timeout=60)

    def test_golden_exec(self):
        items = self.golden_items([("op", "exit"), ("code", 75), ("times", 1)],
                                  [("op", "exit"), ("code", 65)], EXEC_DLQ_DATAERR)
        successes, handler_bytes = self.exec_setup()
        self.run_case(items, successes, handler_bytes, settle_timeout=60)

    def test_scanner_and_generator(self):
        """The test's own tools: the scanner finds exact ranges and refuses
        what is not one object with one key; every generated payload is JSON."""
        body = b'{"a":1, "payload" :\n { "x" : [1E400 , "\\"}"] } \n,"z":{}}'
        self.assertEqual(top_level_value(body, "payload"), b'{ "x" : [1E400 , "\\"}"] }')
        for bad in (b'[1]', b'{"payload":1,"payload":2}', b'{"a":1}', b'{"payload":1} x',
                    b'{"payload":01}', b'{"payload":"\x01"}'):
            with self.assertRaises(ScanError, msg=bad):
                top_level_value(bad, "payload")
        gen = Gen(5)
        rnd = random.Random(5)
        for i in range(300):
            p = gen.payload([("op", "fail"), ("status", 503), ("times", 1)])
            self.assertIsInstance(json.loads(p), dict)
            env = envelope_bytes("m%d" % i, p, rnd)
            self.assertEqual(top_level_value(env, "payload"), p)
            self.assertEqual(json.loads(env)["payload"]["stub"]["times"], 1)
        for name, p in GOLDEN:
            self.assertIsInstance(json.loads(p), dict, name)
            self.assertEqual(json.loads(with_stub(p, b'"stub":{}'))["stub"], {}, name)
        # The lane grid matches the C one at its known points.
        self.assertEqual(lane_grid(110)[:3], [100, 104, 108])


if __name__ == "__main__":
    dlqtest.main()
