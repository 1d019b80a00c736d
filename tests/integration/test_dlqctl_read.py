"""
dlqctl stats, list and show on a DLQ of 10,000 mixed copies (plus a few that
a real dlqd dead-lettered): every filter selects exactly the set a Python
model selects, in queue order; the read-only commands leave the DLQ exactly
as it was (same messages, same order, nothing unacked); the documented exit
codes for a bad filter, a missing queue, an unreachable broker and a
refused replay or purge.
"""
import base64
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dlqtest  # noqa: E402
import dlqctl_util as U  # noqa: E402
from dlqtest import Msg, envelope, note  # noqa: E402

N = 10000


class DlqctlRead(dlqtest.DlqdTestCase):
    def real_copies(self, c):
        """A few copies made by a real dlqd: a 400 and an invalid body."""
        d = c.start_dlqd()
        c.broker.publish(c.q, [Msg(envelope("real-400", stub={"op": "fail", "status": 400},
                                            schema_version="v2"), key="real-400"),
                               Msg(b"{\"message_id\": 1", key="real-raw")])
        c.wait_until(lambda: (c.broker.depth(c.dlq) or 0) >= 2, 30, "2 real DLQ copies")
        self.assertStopsCleanly(d)
        got = c.broker.get_all(c.dlq)
        self.assertEqual(len(got), 2)
        # dlqd handles both at once: either may be dead-lettered first.
        return sorted(got, key=lambda g: g.headers["x-dlqd-error-code"])

    def test_filters_select_exactly(self):
        c = self.ctx
        conf = U.ctl_config(c)
        real = self.real_copies(c)
        t0 = time.monotonic()
        msgs, model = U.build_dlq(c, N, seed=5)
        note("built a DLQ of %d copies in %.1fs" % (N, time.monotonic() - t0))
        # Put the real copies back at the end, as they were.
        U.publish_fast(c, c.dlq, [Msg(g.body, headers=g.props.headers,
                                      content_type=g.props.content_type) for g in real])
        for g in real:
            h = g.headers
            valid = h.get("x-dlqd-error-code") != "INVALID_ENVELOPE"
            model.append(dict(key=h.get("x-dlqd-message-id") or "", id=h.get("x-dlqd-message-id") or "",
                              code=h["x-dlqd-error-code"], cls=h["x-dlqd-error-class"],
                              schema="v2" if valid else None,
                              dead_at=time.time(), valid=valid, body=g.body))
        self.assertEqual(model[-2]["code"], "INVALID_ENVELOPE")
        self.assertEqual(model[-1]["code"], "INVALID_PAYLOAD")
        self.assertEqual(c.broker.depth(c.dlq), len(model))

        now = time.time()
        cases = [
            ([], {}),
            (["--error-code", "RETRY_EXHAUSTED"], dict(codes={"RETRY_EXHAUSTED"})),
            (["--error-code", "AUTH_REVOKED,QUOTA_EXCEEDED"],
             dict(codes={"AUTH_REVOKED", "QUOTA_EXCEEDED"})),
            (["--error-code", "INVALID_ENVELOPE"], dict(codes={"INVALID_ENVELOPE"})),
            (["--error-class", "NON_RETRYABLE"], dict(classes={"NON_RETRYABLE"})),
            (["--error-class", "PERSISTENT", "--error-class", "TRANSIENT"],
             dict(classes={"PERSISTENT", "TRANSIENT"})),
            (["--older-than", "3d"], dict(older=3 * 86400)),
            (["--newer-than", "1d"], dict(newer=86400)),
            (["--older-than", "1h", "--newer-than", "1d"], dict(older=3600, newer=86400)),
            (["--schema-version", "v1"], dict(schemas={"v1"})),
            (["--schema-version", "none"], dict(schemas={"none"})),
            (["--message-id", "m-00042"], dict(ids={"m-00042"})),
            (["--message-id", "raw-00024"], dict(ids={"raw-00024"})),
            (["--error-code", "INVALID_PAYLOAD", "--schema-version", "v2", "--older-than", "1d"],
             dict(codes={"INVALID_PAYLOAD"}, schemas={"v2"}, older=86400)),
            (["--error-code", "NO_SUCH_CODE"], dict(codes={"NO_SUCH_CODE"})),
        ]
        for args, f in cases:
            want = [m for m in model if U.model_match(m, now, **f)]
            got = U.ctl_json_lines(conf, "list", "--json", *args)
            self.assertEqual([g["message_id"] or "" for g in got], [m["id"] for m in want],
                             "list %s" % args)
            self.assertEqual([g["error_code"] for g in got], [m["code"] for m in want])
            note("list %s: %d messages, as the model says" % (" ".join(args), len(got)))
            if not args:
                continue
            st = json.loads(U.run_ctl(conf, "stats", "--json", *args)[1])
            self.assertEqual(st["matched"], len(want), "stats %s" % args)
        # --limit keeps the first N matches.
        got = U.ctl_json_lines(conf, "list", "--json", "--error-class", "NON_RETRYABLE",
                               "--limit", "7")
        want = [m["id"] for m in model if m["cls"] == "NON_RETRYABLE"][:7]
        self.assertEqual([g["message_id"] or "" for g in got], want)

        # stats: the whole DLQ against the model.
        rc, out, err = U.run_ctl(conf, "stats", "--json")
        self.assertEqual(rc, 0, err)
        st = json.loads(out)
        self.assertEqual(st["depth"], len(model))
        self.assertEqual(st["matched"], len(model))
        codes = {}
        classes = {}
        for m in model:
            codes[m["code"]] = codes.get(m["code"], 0) + 1
            classes[m["cls"]] = classes.get(m["cls"], 0) + 1
        self.assertEqual(st["by_error_code"], codes)
        self.assertEqual(st["by_error_class"], classes)
        self.assertEqual(st["retry_exhausted"], codes["RETRY_EXHAUSTED"])
        self.assertEqual(st["non_retryable"], classes["NON_RETRYABLE"])
        self.assertEqual(st["invalid_envelope"], sum(1 for m in model if not m["valid"]))
        oldest = min(m["dead_at"] for m in model)
        self.assertEqual(st["oldest"], U.rfc3339(oldest))
        self.assertAlmostEqual(st["oldest_age_seconds"], time.time() - oldest, delta=60)
        rc, out, err = U.run_ctl(conf, "stats")
        self.assertEqual(rc, 0, err)
        self.assertIn("RETRY_EXHAUSTED", out)
        self.assertIn("retry-exhausted %d" % codes["RETRY_EXHAUSTED"], out)
        note("stats table:\n" + out)

        # show: the whole message, pretty-printed, envelope and headers.
        rc, out, err = U.run_ctl(conf, "show", "m-00042")
        self.assertEqual(rc, 0, err)
        doc = json.loads(out)
        m42 = next(m for m in model if m["id"] == "m-00042")
        self.assertEqual(doc["body"], json.loads(m42["body"]))
        self.assertEqual(doc["headers"]["x-dlqd-error-code"], m42["code"])
        self.assertIn("\n  ", out, "show pretty-prints")
        self.assertEqual(len(doc["body"]["errors"]), 1)
        rc, out, err = U.run_ctl(conf, "show", "--json", "raw-00074")
        self.assertEqual(rc, 0, err)
        doc = json.loads(out)
        self.assertFalse(doc["valid_envelope"])
        self.assertEqual(doc["body_text"], "not json raw-00074")
        self.assertEqual(doc["headers"]["x-dlqd-error-code"], "INVALID_ENVELOPE")
        # Bytes that are not UTF-8 are shown exactly, in base64.
        rc, out, err = U.run_ctl(conf, "show", "--json", "raw-00024")
        self.assertEqual(rc, 0, err)
        raw24 = next(m for m in model if m["key"] == "raw-00024")["body"]
        self.assertEqual(base64.b64decode(json.loads(out)["body_base64"]), raw24)
        rc, out, err = U.run_ctl(conf, "show", "no-such-id")
        self.assertEqual(rc, 6, err)
        self.assertIn("no message with id", err)

        # Nothing moved: same messages in the same order, none left unacked.
        self.assertEqual(c.broker.depth(c.dlq), len(model))
        self.assertEqual(U.dlq_keys(c), [m["key"] for m in model],
                         "the read-only commands changed the DLQ")

    def test_exit_codes(self):
        c = self.ctx
        conf = U.ctl_config(c)
        U.declare_topology(c)
        U.publish_fast(c, c.dlq, [U.dlq_copy("a", "INVALID_PAYLOAD", "NON_RETRYABLE", 1,
                                             int(time.time()) - 100)])
        for args, code, text in [
            (["list", "--error-class", "TRANSIENTT"], 2, "unknown class"),
            (["list", "--older-than", "soon"], 2, "invalid duration"),
            (["list", "--error-code", ""], 2, "empty value"),
            (["frobnicate"], 2, "unknown command"),
            (["show"], 2, "MESSAGE_ID"),
            (["replay"], 5, "without --all"),
            (["purge", "--error-code", "X"], 5, "--yes"),
            (["purge", "--yes"], 5, "without --all"),
            (["replay", "--all", "--rate", "0"], 2, "--rate"),
        ]:
            rc, out, err = U.run_ctl(conf, *args)
            self.assertEqual(rc, code, "%s: %s" % (args, err))
            self.assertIn(text, err)
            self.assertEqual(len(err.strip().splitlines()), 1, "one-line error: %r" % err)
        self.assertEqual(c.broker.depth(c.dlq), 1)

        # A missing DLQ, and a missing main queue for replay.
        other = c.write_config(name="other.conf",
                               extra={"pipeline": {"queue": c.q + "-missing"}})
        rc, out, err = U.run_ctl(other, "stats")
        self.assertEqual(rc, 4, err)
        self.assertIn("does not exist", err)
        c.broker.delete_queue(c.q)
        rc, out, err = U.run_ctl(conf, "replay", "--all")
        self.assertEqual(rc, 4, err)
        self.assertEqual(c.broker.depth(c.dlq), 1)

        # An unreachable broker.
        port = dlqtest.free_port()
        dead = c.write(
            "dead.conf",
            open(conf).read().replace(":%d/" % dlqtest.AMQP_PORT, ":%d/" % port))
        rc, out, err = U.run_ctl(dead, "stats")
        self.assertEqual(rc, 3, err)
        self.assertIn("cannot reach the broker", err)
        # A config that does not parse.
        bad = c.write("bad.conf", "[broker]\nurl = http://x/\n")
        rc, out, err = U.run_ctl(bad, "stats")
        self.assertEqual(rc, 2, err)
        self.assertIn("bad.conf:2:", err)


    def test_hostile_messages(self):
        """Messages built to break dlqctl: escape sequences in the AMQP
        message_id and in the body's error code, C1 and bidi controls, a
        header key that is not UTF-8, a replay_count at the int64 maximum. list shows them escaped, show
        and list --json print complete JSON, purge --archive takes them all."""
        c = self.ctx
        conf = U.ctl_config(c)
        now = int(time.time())
        esc = "\x1b]0;owned\x07\x1b[2J\x1b[31m"
        raw = U.invalid_copy(b"not json hostile-1", "hostile-1", now - 100, True)
        raw.props["message_id"] = "hostile-1" + esc
        valid = U.dlq_copy("hostile-2", "X", "NON_RETRYABLE", 1, now - 100)
        body = json.loads(valid.body)
        body["error_code"] = "E" + esc + "\u009b\u202e"
        valid.body = json.dumps(body).encode()
        del valid.headers["x-dlqd-error-code"]
        # (pika cannot send float headers: NaN and infinities are in test_dlqrecord.)
        valid.headers.update({b"x-\xff\xfe-key": "v", "x-dlqd-replay-count": 2**63 - 1})
        U.publish_fast(c, c.dlq, [raw, valid])

        rc, out, err = U.run_ctl(conf, "list")
        self.assertEqual(rc, 0, err)
        for bad in ("\x1b", "\x07", "\u009b", "\u202e"):
            self.assertNotIn(bad, out + err, "list let a control through: %r" % out)
        self.assertIn("hostile-1\\x1b]0;owned\\x07\\x1b[2J", out)
        self.assertIn("E\\x1b]0;owned", out)
        note("list of hostile messages:\n" + out)

        got = U.ctl_json_lines(conf, "list", "--json")
        self.assertEqual(len(got), 2)
        self.assertEqual(got[0]["message_id"], "hostile-1" + esc)
        self.assertEqual(got[1]["error_code"], "E" + esc + "\u009b\u202e")
        self.assertEqual(got[1]["replay_count"], 2**63 - 2)
        for g in got:
            self.assertEqual(len(g), 11, "a key is missing: %r" % g)

        rc, out, err = U.run_ctl(conf, "show", "hostile-2")
        self.assertEqual(rc, 0, err)
        for bad in ("\x1b", "\x07", "\u009b", "\u202e"):
            self.assertNotIn(bad, out)
        h = json.loads(out)["headers"]
        self.assertEqual(h["x-\\xff\\xfe-key"], "v")

        archive = os.path.join(c.dir, "hostile.jsonl")
        rc, out, err = U.run_ctl(conf, "purge", "--all", "--yes", "--archive", archive)
        self.assertEqual(rc, 0, err)
        self.assertIn("purged 2 of 2", err)
        for bad in ("\x1b", "\x07", "\u009b", "\u202e"):
            self.assertNotIn(bad, err, "the purge log let a control through")
        with open(archive, encoding="utf-8") as f:
            lines = [json.loads(l) for l in f]
        self.assertEqual([l["message_id"] for l in lines], ["hostile-1" + esc, "hostile-2"])
        self.assertEqual(lines[1]["headers"]["x-\\xff\\xfe-key"], "v")
        self.assertEqual(c.broker.depth(c.dlq), 0)

if __name__ == "__main__":
    dlqtest.main()
