"""
A real 3-node RabbitMQ cluster (tests/cluster.sh, started here with `reset`
and stopped at the end): quorum topology (main queue, delay lanes, DLQ), three
dlqd processes competing on one queue, each listing the three nodes rotated
(dlqd #k lists node k first) so they spread over the nodes, a mixed workload
of DLQD_TEST_CLUSTER_MESSAGES (default 20,000) messages published through all
three nodes, and, mid-run, the node of the main queue's quorum leader stopped
and started again.

RabbitMQ 3.10.8 (Debian 12): when a quorum delay lane's leadership moves to
the node that just came back, the lane stops expiring its messages until the
next operation on it (a publish, a basic.get): its retries stay on the
broker, kept but not delivered, while nothing new enters that lane (seen in
two of five runs before this test handled it: 119 to 872 messages held).
dlqd's delay-lane watch (src/dlqd/broker_lanes.c) finds such a lane (its
depth unchanged for longer than its TTL plus 30 s) and moves its overdue head
to the main queue, which wakes it; the test allows no manual step. Every
message is accounted for (succeeded at the stub or in the DLQ with its right
code); duplicates are allowed (at least once), counted and reported with the
other figures, with the heads the daemons moved.

Runs in the normal tree only: tests/CMakeLists.txt leaves it out of a
sanitizer tree (DLQD_SANITIZE), where three instrumented daemons and three
Erlang VMs would not fit the machine.
"""
import collections
import json
import os
import random
import re
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dlqtest  # noqa: E402
from dlqtest import Msg, dlq, envelope, note, success  # noqa: E402

try:
    import pika
except ImportError:  # reported by dlqtest.main()
    pika = None

CLUSTER_SH = os.path.join(dlqtest.SOURCE_DIR, "tests", "cluster.sh")
BASE_PORT = int(os.environ.get("DLQD_TEST_CLUSTER_PORT") or 5701)
STATE = os.environ.get("DLQD_TEST_CLUSTER_STATE") or "/tmp/dlqd-test-cluster"
N_MESSAGES = int(os.environ.get("DLQD_TEST_CLUSTER_MESSAGES") or 20000)
NODES = (1, 2, 3)
DOWN_SECONDS = 10


def port(n):
    return BASE_PORT + n - 1


def url(n):
    return "amqp://guest:guest@127.0.0.1:%d/%%2f" % port(n)


def endpoint(n):
    return "127.0.0.1:%d" % port(n)


def node_env(n):
    """broker_sh()'s environment for rabbitmqctl against node n."""
    return {"DLQD_TEST_AMQP_PORT": str(port(n)), "DLQD_TEST_STATE": "%s/node%d" % (STATE, n)}


def cluster_sh(*args, timeout=400):
    t0 = time.monotonic()
    p = subprocess.run(["bash", CLUSTER_SH] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout,
                       env=dict(os.environ, DLQD_TEST_CLUSTER_PORT=str(BASE_PORT),
                                DLQD_TEST_CLUSTER_STATE=STATE))
    if p.returncode != 0:
        raise dlqtest.HarnessError("cluster.sh %s failed (%d): %s" %
                                   (" ".join(args), p.returncode,
                                    p.stderr.decode(errors="replace")[-3000:]))
    note("cluster.sh %s: %.1fs" % (" ".join(args), time.monotonic() - t0))
    return p.stdout.decode()


def build(n, seed=11):
    """n messages in the shares of a busy day: plain and slow successes,
    transient failures that recover after 1 or 2 retries, failures that
    exhaust the retries, 4xx, unknown errors and malformed bodies."""
    rnd = random.Random(seed)
    msgs, expected = [], {}
    shares = (("ok", 60), ("slow", 10), ("tr", 15), ("ex", 3), ("bad", 7), ("unk", 2), ("raw", 3))
    kinds = [k for k, share in shares for _ in range(share)]
    for i in range(n):
        kind = kinds[i % len(kinds)]
        mid = "%s-%d" % (kind, i)
        if kind == "raw":  # not an envelope: INVALID_ENVELOPE, byte-identical
            msgs.append(Msg(b'{"message_id":"raw-%d","payload":"not an object"}' % i, key=mid))
            expected[mid] = "invalid"
            continue
        if kind == "ok":
            stub, out = None, success(0)
        elif kind == "slow":
            stub, out = {"op": "sleep", "ms": rnd.randint(5, 30)}, success(0)
        elif kind == "tr":
            k = 1 + i % 2
            stub, out = {"op": "fail", "status": 503, "times": k}, success(k)
        elif kind == "ex":
            stub, out = {"op": "fail", "status": 503}, dlq("RETRY_EXHAUSTED", "PERSISTENT", 4)
        elif kind == "bad":
            stub, out = {"op": "fail", "status": 400}, dlq("INVALID_PAYLOAD", "NON_RETRYABLE", 1)
        else:
            stub, out = {"op": "fail", "status": 500}, dlq("UNKNOWN_ERROR", "PERSISTENT", 1)
        msgs.append(Msg(envelope(mid, stub=stub), key=mid))
        expected[mid] = out
    rnd.shuffle(msgs)
    return msgs, expected


def publish_confirmed(amqp_url, queue, msgs, window=500, timeout=300):
    """Publishes msgs (persistent, mandatory) on one confirm-mode channel
    with up to `window` unconfirmed at once (Broker.publish waits for each
    confirm: 20,000 quorum publishes would take a minute); raises unless the
    broker confirmed every one (a nack or a basic.return fails the run)."""
    st = {"next": 0, "acked": 0, "tag": 0, "error": None}
    outstanding = set()

    def fail(conn, why):
        st["error"] = st["error"] or why
        if conn.is_open:
            conn.close()
        elif conn.is_closed:
            conn.ioloop.stop()

    def pump(ch):
        while st["next"] < len(msgs) and len(outstanding) < window:
            m = msgs[st["next"]]
            st["next"] += 1
            st["tag"] += 1
            outstanding.add(st["tag"])
            ch.basic_publish("", queue, m.body, m.properties(), mandatory=True)

    def on_confirm(conn, ch, frame):
        tag = frame.method.delivery_tag
        if isinstance(frame.method, pika.spec.Basic.Nack):
            return fail(conn, "the broker nacked message(s) up to tag %d" % tag)
        done = {t for t in outstanding if t <= tag} if frame.method.multiple else {tag}
        outstanding.difference_update(done)
        st["acked"] += len(done)
        if st["acked"] == len(msgs):
            conn.close()
        else:
            pump(ch)

    def on_channel_closed(conn, reason):
        if st["acked"] < len(msgs):
            fail(conn, "channel closed: %s" % (reason,))

    def on_channel(conn, ch):
        ch.add_on_return_callback(lambda *a: fail(conn, "a message came back (no queue %s?)" % queue))
        ch.add_on_close_callback(lambda c, reason: on_channel_closed(conn, reason))
        ch.confirm_delivery(lambda frame: on_confirm(conn, ch, frame), callback=lambda _: pump(ch))

    conn = pika.SelectConnection(
        pika.URLParameters(amqp_url),
        on_open_callback=lambda c: c.channel(on_open_callback=lambda ch: on_channel(c, ch)),
        on_open_error_callback=lambda c, e: fail(c, "cannot connect: %r" % (e,)),
        on_close_callback=lambda c, reason: c.ioloop.stop())
    timer = conn.ioloop.call_later(timeout, lambda: fail(conn, "timed out after %ds" % timeout))
    conn.ioloop.start()
    conn.ioloop.remove_timeout(timer)
    if st["error"] or st["acked"] != len(msgs):
        raise dlqtest.HarnessError("publishing to %s: %s (%d of %d confirmed)" %
                                   (amqp_url, st["error"] or "connection closed", st["acked"],
                                    len(msgs)))


def publish_through_cluster(queue, msgs):
    """A third of msgs through each node, at the same time."""
    errors = []

    def one(n):
        try:
            publish_confirmed(url(n), queue, msgs[n - 1::3])
        except Exception as e:  # reported below, not lost in the thread
            errors.append("node %d: %s" % (n, e))

    threads = [threading.Thread(target=one, args=(n,)) for n in NODES]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise dlqtest.HarnessError("publishing failed: %s" % "; ".join(errors))


class Successes:
    """stub.successes() read incrementally: the stub's log grows to tens of
    thousands of lines and wait_settled() polls four times a second."""

    def __init__(self, stub):
        self.path = stub.log_path
        self.offset = 0
        self.seen = {}

    def __call__(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return self.seen
        end = data.rfind(b"\n") + 1  # a line being written waits for next time
        self.offset += end
        for line in data[:end].splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue
            st = dlqtest._int(r.get("status"))
            if st is not None and 200 <= st < 300:
                self.seen.setdefault(r.get("message_id"), []).append(dlqtest._int(r.get("attempt")))
        return self.seen


def node_of(text):
    """The node (1..3) whose endpoint a log line or leader name names."""
    for n in NODES:
        if endpoint(n) in text or "dlqd%d@" % port(n) in text:
            return n
    return None


class Cluster(dlqtest.DlqdTestCase):
    def setUp(self):
        # Registered before the context's cleanup, so it runs after it.
        self.addCleanup(cluster_sh, "stop", timeout=300)
        cluster_sh("reset")
        super().setUp()
        self.use_node(1)

    def settle(self, real, seen, n_raw, daemons):
        """Waits for every message to settle, with no manual step: a delay
        lane RabbitMQ 3.10.8 stopped expiring (see the module comment) must
        be found and woken by dlqd's delay-lane watch, which needs the lane's
        depth unchanged for its TTL plus 30 s over three readings (one lane
        per second per daemon, round robin), hence the long stall allowance.
        Returns the heads the daemons moved (their lane-stalled events)."""
        c = self.ctx
        try:
            c.wait_settled(real, seen, n_raw=n_raw, timeout=400, stall=150)
        except dlqtest.HarnessError:
            held = {r["name"]: r["messages"] for r in c.lanes() if r["messages"]}
            note("not settled; held by delay lanes: %s; %d ready on the main queue"
                 % (held, c.broker.depth(c.q) or 0))
            raise
        moved = [sum(1 for e in d.events("lane-stalled") if e.message.startswith("moved"))
                 for d in daemons]
        stalled = sorted({lane for d in daemons for e in d.events("lane-stalled")
                          for lane in re.findall(r"delay lane (\S+)", e.message)})
        note("delay-lane watch: heads moved by dlqd #1..3: %s; stalled lanes: %s"
             % (moved, stalled or "none"))
        return sum(moved)

    def use_node(self, n):
        """The harness's AMQP client and rabbitmqctl go through node n."""
        c = self.ctx
        c.broker.close()
        c.broker = dlqtest.Broker(url(n))
        c.broker_env = node_env(n)

    def test_cluster_failover(self):
        c = self.ctx
        t_start = time.monotonic()
        seen = Successes(c.start_stub())
        daemons = []
        for k in NODES:
            urls = [url(n) for n in NODES[k - 1:] + NODES[:k - 1]]
            conf = c.write_config(name="dlqd%d.conf" % k, prefetch=50, timeout="5s",
                                  queue_type="quorum",
                                  extra={"broker": {"url": " ".join(urls)},
                                         "metrics": {"listen": "127.0.0.1:%d" % dlqtest.free_port()}})
            daemons.append(dlqtest.start_service_dlqd(c, config=conf, wait_ready=False,
                                                      notify=False))
        c.wait_until(lambda: (c.broker.queue_info(c.q) or (0, 0))[1] == 3, 60,
                     "three consumers on %s" % c.q)
        first = [node_of(d.wait_event("broker-connected", 1, timeout=30)[0].message)
                 for d in daemons]
        note("dlqd #1..3 connected to nodes %s" % first)
        self.assertEqual(first, list(NODES), "each dlqd connects to the node it lists first")

        msgs, expected = build(N_MESSAGES)
        n_raw = sum(1 for v in expected.values() if v == "invalid")
        real = {k: v for k, v in expected.items() if v != "invalid"}
        want_ok = sum(1 for v in real.values() if dlqtest.outcome_kind(v) == "success")
        t0 = time.monotonic()
        publish_through_cluster(c.q, msgs)
        t_pub = time.monotonic() - t0
        note("published %d messages (%d malformed) through 3 nodes in %.1fs" %
             (len(msgs), n_raw, t_pub))

        # Mid-run: the node of the main queue's quorum leader goes away.
        c.wait_until(lambda: len(seen()) >= want_ok // 4, 120,
                     "a quarter of the successes before the node stops", interval=0.5)
        leaders = {r["name"]: r.get("leader") for r in c.our_queues(("name", "leader"))}
        leader = node_of(str(leaders.get(c.q))) or 1
        victim = leader
        on_victim = [k for k, n in zip(NODES, first) if n == victim]
        self.assertTrue(on_victim, "no dlqd on node %d" % victim)
        done_before = len(seen())
        lane_leaders = sorted(n for n, ld in leaders.items()
                              if n != c.q and node_of(str(ld)) == victim)
        note("stopping node %d (leader of the main queue and of %s; dlqd %s connected to "
             "it) after %d of %d successes" %
             (victim, lane_leaders or "no lane", on_victim, done_before, want_ok))
        self.assertLess(done_before, want_ok, "the workload ended before the node stopped")
        self.use_node(victim % 3 + 1)
        t_down = time.monotonic()
        cluster_sh("stop-node", str(victim))
        time.sleep(DOWN_SECONDS)
        cluster_sh("start-node", str(victim))
        note("node %d was away %.1fs" % (victim, time.monotonic() - t_down))

        moved = self.settle(real, seen, n_raw, daemons)
        t_settled = time.monotonic() - t0

        for row in c.our_queues(("name", "type")):
            self.assertEqual(row["type"], "quorum", "%s is not a quorum queue" % row["name"])
        self.assertTrue(c.lanes(), "no delay lane was declared")
        # Duplicates can fill the DLQ's count before the last copies arrive,
        # and a quorum lane's expired message is counted nowhere while its
        # at-least-once dead-letter worker moves it: read until every message
        # is accounted for or nothing has moved for 60 s.
        copies, last, since = [], None, time.monotonic()
        while True:
            copies += c.broker.get_all(c.dlq)
            successes = c.stub.successes()  # the whole log once more, from scratch
            report = dlqtest.account(msgs, expected, successes, copies)
            progress = (len(copies), sum(len(v) for v in successes.values()))
            if progress != last:
                last, since = progress, time.monotonic()
            if report.ok or time.monotonic() - since > dlqtest.scaled(60):
                break
            time.sleep(1)
        self.assertAccounted(report)

        # The daemons on the stopped node lost it and went on with another.
        reconnects = {}
        for k, d in zip(NODES, daemons):
            conns = [node_of(e.message) for e in d.events("broker-connected")]
            reconnects[k] = len(conns) - 1
            if k in on_victim:
                self.assertTrue(d.events("broker-lost"), "dlqd #%d did not see node %d go" %
                                (k, victim))
                self.assertTrue([n for n in conns[1:] if n != victim],
                                "dlqd #%d never moved to another node: %s" % (k, conns))
        by_code = collections.Counter(g.header("x-dlqd-error-code") for g in copies)
        note("cluster figures: published=%d succeeded=%d (%d answers) dead-lettered=%d %s "
             "duplicates=%d reconnects=%s stopped node=%d moved from stalled lanes=%d; "
             "publish %.1fs, publish to settled %.1fs, whole test %.1fs" %
             (len(msgs), len(successes), sum(len(v) for v in successes.values()), len(copies),
              dict(sorted(by_code.items())), report.duplicates, reconnects, victim, moved,
              t_pub, t_settled, time.monotonic() - t_start))
        for d in daemons:
            self.assertStopsCleanly(d)


if __name__ == "__main__":
    dlqtest.main(need_broker=False)
