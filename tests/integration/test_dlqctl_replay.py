"""
dlqctl replay and purge against the real broker:
- a subset of a 10,000-message DLQ replayed while a real dlqd consumes the
  main queue: exactly that subset reaches the downstream (attempt 0), the
  rest of the DLQ keeps its order, blocked schema versions stay unless
  --force;
- the replay copy (attempt reset, replay_count, replayed_at, history kept;
  an invalid body's bytes unchanged) and the rate cap, measured from the
  arrival times on the main queue (within 10%);
- SIGINT stops cleanly; SIGKILL mid-replay loses nothing;
- purge deletes exactly the matches, archives them first, logs each one.
"""
import base64
import json
import os
import pty
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dlqtest  # noqa: E402
import dlqctl_util as U  # noqa: E402
from dlqtest import note, pika  # noqa: E402


def arrivals(ctx, queue, n, timeout):
    """Consumes n messages from queue in a thread; returns (thread, list of
    (monotonic time, Got))."""
    out = []

    def run():
        conn = pika.BlockingConnection(ctx.broker._params())
        try:
            ch = conn.channel()
            deadline = time.monotonic() + timeout
            for method, props, body in ch.consume(queue, inactivity_timeout=0.5):
                if method is not None:
                    out.append((time.monotonic(), dlqtest.Got(method, props, body)))
                    ch.basic_ack(method.delivery_tag)
                if len(out) >= n or time.monotonic() > deadline:
                    break
            ch.cancel()
        finally:
            conn.close()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


class DlqctlReplay(dlqtest.DlqdTestCase):
    def test_replay_subset_to_running_dlqd(self):
        c = self.ctx
        conf = U.ctl_config(c, extra={"replay": {"block_schema_versions": "v1, v0"}})
        msgs, model = U.build_dlq(c, 10000, seed=7)
        d = c.start_dlqd()
        want = [m for m in model if m["code"] == "QUOTA_EXCEEDED"]
        v1 = [m for m in want if m["schema"] == "v1"]
        first = [m for m in want if m["schema"] != "v1"]
        note("replaying %d QUOTA_EXCEEDED (%d more blocked as v1)" % (len(first), len(v1)))
        rc, out, err = U.run_ctl(conf, "replay", "--error-code", "QUOTA_EXCEEDED",
                                 "--rate", "2000")
        self.assertEqual(rc, 5, "blocked schema versions must make replay exit 5: %s" % err)
        self.assertIn("refused %d message(s)" % len(v1), err)
        self.assertIn("replayed %d of %d" % (len(first), len(want)), err)
        c.wait_until(lambda: set(c.stub.successes()) >= {m["id"] for m in first}, 60,
                     "dlqd handling the replayed messages")
        ok = c.stub.successes()
        self.assertEqual(set(ok), {m["id"] for m in first}, "exactly the replayed set succeeded")
        self.assertTrue(all(a == [0] for a in ok.values()), "replays start at attempt 0")
        first_keys = {m["key"] for m in first}
        rest = [m["key"] for m in model if m["key"] not in first_keys]
        self.assertEqual(U.dlq_keys(c), rest, "the rest of the DLQ kept its order")

        # --force replays the blocked ones; --dry-run first moves nothing.
        rc, out, err = U.run_ctl(conf, "replay", "--error-code", "QUOTA_EXCEEDED", "--force",
                                 "--dry-run", "--json")
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["replayed"], len(v1))
        c.wait_until(lambda: c.broker.depth(c.dlq) == len(rest), 10, "DLQ intact after dry run")
        rc, out, err = U.run_ctl(conf, "replay", "--error-code", "QUOTA_EXCEEDED", "--force",
                                 "--rate", "2000")
        self.assertEqual(rc, 0, err)
        c.wait_until(lambda: set(c.stub.successes()) >= {m["id"] for m in want}, 60,
                     "dlqd handling the forced replays")
        want_keys = {m["key"] for m in want}
        rest = [m["key"] for m in model if m["key"] not in want_keys]
        self.assertEqual(U.dlq_keys(c), rest)
        self.assertStopsCleanly(d)

    def test_replay_copy_and_rate(self):
        c = self.ctx
        conf = U.ctl_config(c)
        msgs, model = U.build_dlq(c, 400, seed=11, invalid_every=10)
        by_key = {m["key"]: (m, g) for m, g in zip(model, msgs)}
        n, rate = 60, 20
        t, got = arrivals(c, c.q, n, dlqtest.scaled(30))
        rc, out, err = U.run_ctl(conf, "replay", "--error-code", "INVALID_PAYLOAD,UNKNOWN_ERROR",
                                 "--rate", str(rate), "--limit", str(n))
        self.assertEqual(rc, 0, err)
        t.join(dlqtest.scaled(30))
        self.assertEqual(len(got), n)
        span = got[-1][0] - got[0][0]
        measured = (n - 1) / span
        note("replay rate: %d messages in %.2fs = %.2f/s (cap %d/s)" % (n, span, measured, rate))
        self.assertLessEqual(abs(measured - rate) / rate, 0.10,
                             "rate %.2f/s is not within 10%% of %d/s" % (measured, rate))
        want = [m["key"] for m in model if m["code"] in ("INVALID_PAYLOAD", "UNKNOWN_ERROR")][:n]
        self.assertEqual([U.key_of(g) for _, g in got], want, "replayed in DLQ order")
        for _, g in got:
            m, orig = by_key[U.key_of(g)]
            body, ob = g.json(), json.loads(orig.body)
            self.assertEqual(body["attempt"], 0)
            self.assertEqual(body["replay_count"], 1)
            self.assertRegex(body["replayed_at"], dlqtest.ISO_RE)
            for k in ("payload", "errors", "last_error", "error_code", "message_id",
                      "dead_lettered_at", "first_seen_at"):
                self.assertEqual(body[k], ob[k], k)
            self.assertEqual(g.header("x-dlqd-attempt"), 0)
            self.assertEqual(g.header("x-dlqd-replay-count"), 1)
            self.assertEqual(g.header("x-dlqd-message-id"), m["id"])
            self.assertEqual(g.header("x-dlqd-error-code"), m["code"])
            self.assertNotIn("x-dlqd-publish-seq", g.headers)
            self.assertNotIn("x-dlqd-dead-lettered-at", g.headers)
            self.assertEqual(g.props.delivery_mode, 2)

        # Invalid bodies go back byte for byte; the count is in a header.
        raws = [m for m in model if not m["valid"]][:5]
        t, got = arrivals(c, c.q, 5, dlqtest.scaled(30))
        rc, out, err = U.run_ctl(conf, "replay", "--error-code", "INVALID_ENVELOPE", "--limit",
                                 "5", "--rate", "1000")
        self.assertEqual(rc, 0, err)
        t.join(dlqtest.scaled(30))
        self.assertEqual([g.body for _, g in got], [m["body"] for m in raws])
        for _, g in got:
            self.assertEqual(g.header("x-dlqd-replay-count"), 1)
            self.assertEqual(g.header("x-dlqd-error-code"), "INVALID_ENVELOPE")
        left = [m["key"] for m in model
                if m["key"] not in want and m["key"] not in {r["key"] for r in raws}]
        self.assertEqual(U.dlq_keys(c), left)

    def start_replay(self, conf, *args):
        log = open(self.ctx.path("replay.stderr"), "wb")
        p = subprocess.Popen([U.CTL, "--config", conf, "replay"] + list(args),
                             stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        return p

    def wait_main(self, n):
        c = self.ctx
        c.wait_until(lambda: (c.broker.depth(c.q) or 0) >= n, 30,
                     "%d replayed messages on the main queue" % n, interval=0.05)

    def test_sigint_stops_cleanly(self):
        c = self.ctx
        conf = U.ctl_config(c)
        msgs, model = U.build_dlq(c, 2000, seed=13)
        p = self.start_replay(conf, "--all", "--rate", "100", "--json")
        self.wait_main(50)
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=dlqtest.scaled(30))
        self.assertEqual(p.returncode, 130)
        with open(c.path("replay.stderr")) as f:
            err = f.read()
        self.assertFalse(dlqtest.SANITIZER_RE.search(err), err)
        summary = json.loads(out)
        self.assertTrue(summary["interrupted"])
        moved = summary["replayed"]
        note("SIGINT after %d replays" % moved)
        main = c.broker.get_all(c.q)
        self.assertEqual(len(main), moved, "every confirmed replay was acked, no more")
        keys = [m["key"] for m in model]
        self.assertEqual([U.key_of(g) for g in main], keys[:moved])
        self.assertEqual(U.dlq_keys(c), keys[moved:], "the rest stays in order, none unacked")

    def test_max_duration(self):
        """A run stops by itself before the broker's consumer_timeout."""
        c = self.ctx
        conf = U.ctl_config(c)
        msgs, model = U.build_dlq(c, 500, seed=29)
        rc, out, err = U.run_ctl(conf, "replay", "--all", "--rate", "20", "--max-duration", "1s",
                                 "--json")
        self.assertEqual(rc, 0, err)
        self.assertIn("stopped after --max-duration (1s)", err)
        moved = json.loads(out)["replayed"]
        self.assertTrue(10 <= moved <= 30, moved)
        keys = [m["key"] for m in model]
        self.assertEqual([U.key_of(g) for g in c.broker.get_all(c.q)], keys[:moved])
        self.assertEqual(U.dlq_keys(c), keys[moved:])

    def test_sigkill_loses_nothing(self):
        c = self.ctx
        conf = U.ctl_config(c)
        msgs, model = U.build_dlq(c, 3000, seed=17)
        p = self.start_replay(conf, "--all", "--rate", "2000")
        self.wait_main(500)
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        p.stdout.close()
        dlq = U.dlq_keys(c)
        main = [U.key_of(g) for g in c.broker.get_all(c.q)]
        keys = [m["key"] for m in model]
        seen = set(dlq) | set(main)
        self.assertEqual(seen, set(keys), "lost: %s" % sorted(set(keys) - seen)[:5])
        dup = len(dlq) + len(main) - len(keys)
        note("SIGKILL after %d replays: %d in the DLQ, %d duplicate(s)" % (len(main), len(dlq), dup))
        self.assertEqual(len(set(dlq)), len(dlq))
        self.assertEqual(len(set(main)), len(main))
        # Duplicates are only those confirmed but not yet acked when killed.
        self.assertLessEqual(dup, 256)
        self.assertEqual(dlq, [k for k in keys if k in set(dlq)], "DLQ order kept")

    def test_purge_archives_and_logs(self):
        c = self.ctx
        conf = U.ctl_config(c)
        msgs, model = U.build_dlq(c, 1000, seed=19, invalid_every=7)
        keys = [m["key"] for m in model]
        rc, out, err = U.run_ctl(conf, "purge", "--error-code", "AUTH_REVOKED", "--dry-run")
        self.assertEqual(rc, 0, err)
        self.assertEqual(U.dlq_keys(c), keys)
        # An archive that cannot be written: nothing is purged.
        rc, out, err = U.run_ctl(conf, "purge", "--error-code", "AUTH_REVOKED", "--yes",
                                 "--archive", "/dev/full")
        self.assertEqual(rc, 1, err)
        self.assertIn("writing the archive /dev/full", err)
        c.wait_until(lambda: c.broker.depth(c.dlq) == len(keys), 10, "the DLQ intact")
        self.assertEqual(U.dlq_keys(c), keys)
        archive = c.path("purged.jsonl")
        gone = [m for m in model if m["code"] in ("AUTH_REVOKED", "INVALID_ENVELOPE")]
        rc, out, err = U.run_ctl(conf, "purge", "--error-code", "AUTH_REVOKED,INVALID_ENVELOPE",
                                 "--yes", "--archive", archive)
        self.assertEqual(rc, 0, err)
        with open(archive) as f:
            lines = [json.loads(l) for l in f]
        self.assertEqual([l["message_id"] or l["properties"].get("message_id", "")
                          for l in lines], [m["id"] for m in gone])
        for l, m in zip(lines, gone):
            body = l["body_text"].encode() if "body_text" in l else base64.b64decode(l["body_base64"])
            self.assertEqual(body, m["body"], "archived bytes are exact")
            self.assertEqual(l["headers"]["x-dlqd-error-code"], m["code"])
        logged = [dlqtest.parse_log_line(x) for x in err.splitlines() if "event=purge" in x]
        self.assertEqual([(e.get("message_id", ""), e.get("error_code")) for e in logged],
                         [(m["id"], m["code"]) for m in gone])
        gone_keys = {m["key"] for m in gone}
        self.assertEqual(U.dlq_keys(c), [m["key"] for m in model if m["key"] not in gone_keys])

    def test_quorum_dlq(self):
        """RabbitMQ 3.10 hands one consumer of a quorum queue at most 2000
        unacked messages: a read-only scan sees the first 2000 and says so;
        replay and purge ack as they go, so they see everything, in order."""
        c = self.ctx
        if not c.stubs:
            c.start_stub()
        conf = c.write_config(queue_type="quorum")
        now = int(time.time())
        msgs = [U.dlq_copy("q-%05d" % i, "AUTH_REVOKED", "NON_RETRYABLE", 1, now - 100 - i)
                for i in range(2500)]
        U.publish_fast(c, c.dlq, msgs, queue_type="quorum")
        rc, out, err = U.run_ctl(conf, "stats", "--json")
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["scanned"], 2000)
        self.assertIn("quorum queue at most 2000 unacked", err)
        c.wait_until(lambda: c.broker.depth(c.dlq) == 2500, 10, "the quorum DLQ intact")
        # Nothing matches in the first 2000, so nothing frees the credit: the
        # replay cannot reach the rest and must not say it is done.
        rc, out, err = U.run_ctl(conf, "replay", "--error-code", "NO_SUCH_CODE",
                                 "--rate", "100000")
        self.assertEqual(rc, 1, err)
        self.assertIn("stopped before the end", err)
        c.wait_until(lambda: c.broker.depth(c.dlq) == 2500, 10, "the quorum DLQ intact")
        rc, out, err = U.run_ctl(conf, "replay", "--all", "--rate", "100000")
        self.assertEqual(rc, 0, err)
        self.assertIn("replayed 2500 of 2500", err)
        self.assertEqual([U.key_of(g) for g in c.broker.get_all(c.q)], [m.key for m in msgs])
        self.assertEqual(c.broker.depth(c.dlq), 0)

    def test_progress_only_on_a_terminal(self):
        c = self.ctx
        conf = U.ctl_config(c)
        U.build_dlq(c, 200, seed=23)
        args = ["--config", conf, "replay", "--all", "--rate", "40", "--limit", "60"]
        # stderr not a terminal: only the one-line summary.
        rc, out, err = U.run_ctl(conf, *args[2:])
        self.assertEqual(rc, 0, err)
        self.assertEqual(err.splitlines(), ["replayed 60 of 60 matching message(s) (60 scanned)"])
        # stderr a terminal: a progress line (count, rate, ETA) redrawn in place.
        master, slave = pty.openpty()
        p = subprocess.Popen([U.CTL] + args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=slave)
        os.close(slave)
        tty = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            tty += chunk
        os.close(master)
        p.communicate(timeout=dlqtest.scaled(30))
        self.assertEqual(p.returncode, 0)
        text = tty.decode(errors="replace")
        self.assertRegex(text, r"\r\x1b\[Kscanned \d+/140, matched \d+, replayed \d+  [\d.]+ msg/s  ETA ")
        self.assertIn("replayed 60 of 60", text)


if __name__ == "__main__":
    dlqtest.main()
