"""
Hostile and odd input: a handler that hangs past the timeout, a 1 MiB payload,
a downstream that closes the connection or sends a huge body, and envelopes
that are invalid in every way we could think of (invalid UTF-8, 10,000-deep
JSON, non-object payload, negative / huge / string attempt, numeric or
over-long message_id, empty body, NUL bytes). Each is routed as expected,
invalid bodies reach the DLQ byte-identical, and dlqd keeps running.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dlqtest  # noqa: E402
from dlqtest import Msg, dlq, envelope, note, success  # noqa: E402


def raw_cases():
    deep = 10000
    return {
        "invalid-utf8": b'{"message_id":"u8","payload":{"s":"caf\xe9 \xc3\x28"}}',
        "deep-nesting": b'{"message_id":"deep","payload":{"a":' + b"[" * deep + b"]" * deep + b"}}",
        "payload-number": b'{"message_id":"pnum","payload":42}',
        "payload-null": b'{"message_id":"pnull","payload":null}',
        "payload-missing": b'{"message_id":"pmiss"}',
        "attempt-negative": b'{"message_id":"aneg","attempt":-1,"payload":{}}',
        "attempt-huge": b'{"message_id":"ahuge","attempt":1000000000000000,"payload":{}}',
        "attempt-string": b'{"message_id":"astr","attempt":"2","payload":{}}',
        "attempt-float": b'{"message_id":"aflt","attempt":1.5,"payload":{}}',
        "max-attempt-negative": b'{"message_id":"mneg","max_attempt":-5,"payload":{}}',
        "id-number": b'{"message_id":12345,"payload":{}}',
        "id-too-long": json.dumps({"message_id": "x" * 5000, "payload": {}}).encode(),
        "top-level-array": b'[{"message_id":"arr","payload":{}}]',
        "empty-body": b"",
        "nul-bytes": b'{"message_id":"nul\x00id","payload":{}}\x00\x00',
        "trailing-garbage": b'{"message_id":"trail","payload":{}} and more',
    }


class BadInput(dlqtest.DlqdTestCase):
    def test_bad_input(self):
        c = self.ctx
        c.start_stub()
        c.write_config(prefetch=20, timeout="1s")
        d = c.start_dlqd()

        msgs, expected = [], {}

        def add(mid, outcome, **env):
            msgs.append(Msg(envelope(mid, **env), key=mid))
            expected[mid] = outcome

        add("hang", dlq("RETRY_EXHAUSTED", "PERSISTENT", 4), stub={"op": "hang"})
        add("big", success(0), payload={"blob": "x" * (1 << 20)})
        add("close", dlq("UNKNOWN_ERROR", "PERSISTENT", 1), stub={"op": "close"})
        add("hugebody", dlq("UNKNOWN_ERROR", "PERSISTENT", 1), stub={"op": "body", "status": 500, "bytes": 4 << 20})
        add("at-max", dlq("RETRY_EXHAUSTED", "PERSISTENT", 4), stub={"op": "fail", "status": 503}, attempt=3)
        add("own-max", dlq("RETRY_EXHAUSTED", "PERSISTENT", 2), stub={"op": "fail", "status": 503}, max_attempt=1)
        add("unicode-ok", success(0), payload={"s": "caf\u00e9 \u2603 \U0001F600"})
        for label, body in raw_cases().items():
            msgs.append(Msg(body, key=label))
            expected[label] = "invalid"

        c.broker.publish(c.q, msgs)
        n_raw = len(raw_cases())
        real = {k: v for k, v in expected.items() if v != "invalid"}
        c.wait_settled(real, c.stub.successes, n_raw=n_raw, timeout=60)

        report, copies = self.assertAllAccounted(msgs, expected)

        timeouts = [e for e in d.events("retry") if e.get("message_id") == "hang"]
        self.assertEqual([e.get("error_code") for e in timeouts], ["UPSTREAM_TIMEOUT"] * 3,
                         "retry events of the hanging message: %s" % timeouts)
        for g in copies:
            if g.header("x-dlqd-message-id") == "hugebody":
                self.assertLess(len(g.body), 64 * 1024,
                                "a 4 MiB error body made a %d-byte DLQ copy (evidence unbounded)" % len(g.body))
                le = json.loads(g.body).get("last_error", {})
                self.assertIn(500, [int(x) for x in dlqtest.find_key(le, "http_status")],
                              "no http_status 500 evidence: %s" % le)

        # Still alive and working.
        d.assert_alive("after the bad input")
        c.broker.publish(c.q, [Msg(envelope("final"), key="final")])
        c.wait_settled({"final": success(0)}, c.stub.successes, timeout=20)
        self.assertStopsCleanly(d)


if __name__ == "__main__":
    dlqtest.main()
