"""
amqps:// against a real TLS listener. The test runs its OWN RabbitMQ node
(tests/broker.sh with DLQD_TEST_BROKER_EXTRA_CONF, AMQP port = main + 7,
state under a temp dir) with a TLS listener, and a throwaway PKI made with the
openssl CLI: a CA, a server cert for DNS:localhost + IP:127.0.0.1, a variant
with DNS:localhost only, and an unrelated second CA. The main test node is
never touched; the test publishes and reads back over the node's plain port.
  a) amqps://localhost with tls_ca_file = the CA: dlqd connects over TLS
     (rabbitmqctl shows an ssl connection) and a small workload (ok, retried
     through the delay lanes, dead-lettered) is fully accounted for;
  b) the unrelated CA: no broker-connected, broker-connect-failed events that
     name the TLS failure, dlqd keeps retrying and exits 0 on SIGTERM;
  c) the DNS-only cert, amqps://127.0.0.1: refused with
     tls_verify_hostname = true, connects with tls_verify_hostname = false;
  d) a listener that requires a client certificate (verify_peer,
     fail_if_no_peer_cert): refused without one; with tls_cert_file and a
     tls_key_file given as a systemd credential (relative name, found in
     $CREDENTIALS_DIRECTORY, mode 0400) dlqd connects and the node sees
     the client certificate's subject.
Not tested: amqps://127.0.0.1 against the IP:127.0.0.1 SAN with the hostname
check on. librabbitmq 0.11 matches only DNS names (SAN dNSName, or the CN when
there is no SAN), so that is refused too ("SSL hostname verification failed").
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dlqtest  # noqa: E402
from dlqtest import Msg, dlq, envelope, note, scaled, success  # noqa: E402

OPENSSL = shutil.which("openssl")
TCP_PORT = dlqtest.AMQP_PORT + 7
TLS_ERROR_RE = re.compile(r"ssl|tls|certificate|handshake", re.I)

CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = %(cn)s
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = %(san)s
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
"""


def openssl(pki, *args):
    p = subprocess.run([OPENSSL] + list(args), cwd=pki, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    if p.returncode != 0:
        raise dlqtest.HarnessError("openssl %s failed: %s" % (" ".join(args), p.stdout.decode()))


def make_ca(pki, name, cn):
    cnf = os.path.join(pki, name + ".cnf")
    with open(cnf, "w") as f:
        f.write(CNF % {"cn": cn, "san": "DNS:unused"})
    openssl(pki, "req", "-x509", "-config", cnf, "-extensions", "ca", "-newkey", "ec",
            "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", name + ".key",
            "-out", name + ".pem", "-days", "2")


def make_server(pki, name, ca, san, serial, cn="localhost", ext="server"):
    cnf = os.path.join(pki, name + ".cnf")
    with open(cnf, "w") as f:
        f.write(CNF % {"cn": cn, "san": san})
    openssl(pki, "req", "-new", "-config", cnf, "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", name + ".key", "-out", name + ".csr")
    openssl(pki, "x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
            "-set_serial", str(serial), "-days", "2", "-extfile", cnf, "-extensions", ext,
            "-out", name + ".pem")


@unittest.skipIf(OPENSSL is None, "the openssl CLI is not installed (apt-get install openssl): "
                 "cannot make certificates, amqps:// NOT tested")
class Tls(dlqtest.DlqdTestCase):
    served = None  # which server cert the node uses now

    @classmethod
    def setUpClass(cls):
        # Runs even when setUpClass fails half-way: the node never outlives us.
        cls.addClassCleanup(cls.stop_node)
        cls.failed = False
        cls.dir = tempfile.mkdtemp(prefix="dlqd-it-tls-node-")
        os.chmod(cls.dir, 0o755)  # the node runs as rabbitmq and reads the certs
        cls.pki = os.path.join(cls.dir, "pki")
        os.mkdir(cls.pki)
        make_ca(cls.pki, "ca", "dlqd test CA")
        make_ca(cls.pki, "otherca", "unrelated test CA")
        make_server(cls.pki, "server", "ca", "DNS:localhost,IP:127.0.0.1", 1)
        make_server(cls.pki, "server-dns", "ca", "DNS:localhost", 2)
        make_server(cls.pki, "client", "ca", "DNS:unused", 3, cn="dlqd-test-client", ext="client")
        for n in os.listdir(cls.pki):
            os.chmod(os.path.join(cls.pki, n), 0o644)
        cls.tls_port = dlqtest.free_port()
        cls.extra_conf = os.path.join(cls.dir, "tls.conf")
        cls.env = {"DLQD_TEST_AMQP_PORT": str(TCP_PORT),
                   "DLQD_TEST_STATE": os.path.join(cls.dir, "node"),
                   "DLQD_TEST_BROKER_EXTRA_CONF": cls.extra_conf}
        cls.plain_url = "amqp://guest:guest@127.0.0.1:%d/%%2f" % TCP_PORT

    @classmethod
    def stop_node(cls):
        if getattr(cls, "env", None) is None:
            return
        try:
            dlqtest.broker_sh("stop", env=cls.env, check=False, timeout=120)
        except Exception as e:
            note("stopping the TLS node: %r" % e)
        if cls.failed or os.environ.get("DLQD_TEST_KEEP"):
            note("TLS node files kept in %s" % cls.dir)
        else:
            shutil.rmtree(cls.dir, ignore_errors=True)

    @classmethod
    def serve(cls, cert, client_cert=False):
        """(Re)starts the node so that its TLS listener presents `cert` (and
        requires a client certificate signed by the CA with client_cert)."""
        if cls.served == (cert, client_cert):
            return
        with open(cls.extra_conf, "w") as f:
            f.write("listeners.ssl.default = 127.0.0.1:%d\n"
                    "ssl_options.cacertfile = %s\n"
                    "ssl_options.certfile = %s\n"
                    "ssl_options.keyfile = %s\n"
                    "ssl_options.verify = %s\n"
                    "ssl_options.fail_if_no_peer_cert = %s\n" %
                    (cls.tls_port, os.path.join(cls.pki, "ca.pem"),
                     os.path.join(cls.pki, cert + ".pem"), os.path.join(cls.pki, cert + ".key"),
                     "verify_peer" if client_cert else "verify_none",
                     "true" if client_cert else "false"))
        t0 = time.monotonic()
        cls.served = None
        dlqtest.broker_sh("restart", env=cls.env, timeout=180)
        cls.served = (cert, client_cert)
        note("TLS node on 127.0.0.1:%d (amqps) / %d (amqp) serves %s.pem (%.1fs)" %
             (cls.tls_port, TCP_PORT, cert, time.monotonic() - t0))

    def setUp(self):
        super().setUp()
        self.ctx.broker = dlqtest.Broker(self.plain_url)
        self.ctx.broker_env = self.env

    def run(self, result=None):
        if result is None:
            result = self.defaultTestResult()
        before = len(result.failures) + len(result.errors)
        super().run(result)
        if len(result.failures) + len(result.errors) > before:
            type(self).failed = True
        return result

    # -- helpers
    def url(self, host):
        return "amqps://guest:guest@%s:%d/%%2f" % (host, self.tls_port)

    def config(self, host, ca="ca", verify_hostname=None, name="dlqd.conf"):
        broker = {"url": self.url(host)}
        if ca:
            broker["tls_ca_file"] = os.path.join(self.pki, ca + ".pem")
        if verify_hostname is not None:
            broker["tls_verify_hostname"] = verify_hostname
        return self.ctx.write_config(prefetch=20, extra={"broker": broker}, name=name)

    def ssl_connections(self):
        rows = dlqtest.ctl_json("list_connections", "ssl", "ssl_protocol", "user", "peer_host",
                                env=self.env)
        return [r for r in rows if r.get("ssl") is True]

    def assert_connects(self, host, **kw):
        c = self.ctx
        d = c.start_dlqd(self.config(host, **kw))  # waits until it consumes our queue
        ev = d.wait_event("broker-connected", timeout=10)
        note("connected: %s" % ev[0].raw)
        conns = self.ssl_connections()
        note("TLS connections on the node: %s" % conns)
        self.assertTrue(conns, "dlqd consumes, but the node lists no ssl connection")
        return d

    def assert_refused(self, host, why, **kw):
        c = self.ctx
        d = c.start_dlqd(self.config(host, **kw), wait_ready=False)
        # Two failures: it did try, and it keeps retrying after the first.
        evs = d.wait_event("broker-connect-failed", count=2, timeout=10)
        for e in evs:
            note("refused (%s): %s" % (why, e.raw))
        bad = [e.raw for e in evs if not TLS_ERROR_RE.search(e.raw)]
        self.assertFalse(bad, "broker-connect-failed does not name the TLS problem: %s" % bad)
        time.sleep(scaled(1))
        self.assertFalse(d.events("broker-connected"),
                         "dlqd connected despite %s:\n%s" % (why, d.tail()))
        self.assertFalse(c.broker.exists(c.q), "dlqd declared %s despite %s" % (c.q, why))
        d.assert_alive("after refused TLS connections (it must keep retrying)")
        rc = d.stop(timeout=10)
        self.assertEqual(rc, 0, "dlqd exit status %s on SIGTERM while disconnected" % rc)

    # -- tests (names sort so that the node restarts once, for c)
    def test_a_workload_over_tls(self):
        self.serve("server")
        c = self.ctx
        c.start_stub()
        d = self.assert_connects("localhost")
        msgs, expected = [], {}
        for i in range(20):
            msgs.append(Msg(envelope("ok-%d" % i), key="ok-%d" % i))
            expected["ok-%d" % i] = success(0)
        for i in range(5):
            mid = "tr-%d" % i
            msgs.append(Msg(envelope(mid, stub={"op": "fail", "status": 503, "times": 1}), key=mid))
            expected[mid] = success(1)
        for i in range(5):
            mid = "bad-%d" % i
            msgs.append(Msg(envelope(mid, stub={"op": "fail", "status": 400}), key=mid))
            expected[mid] = dlq("INVALID_PAYLOAD", "NON_RETRYABLE", 1,
                                {"http_status": lambda v: str(v) == "400"})
        c.broker.publish(c.q, msgs)
        c.wait_settled(expected, c.stub.successes, timeout=30)
        report = dlqtest.account(msgs, expected, c.stub.successes(), c.broker.get_all(c.dlq))
        self.assertAccounted(report)
        self.assertEqual(len(d.events("retry")), 5, "expected 5 retry events")
        self.assertEqual(len(d.events("broker-connected")), 1, "dlqd reconnected during the run")

    def test_a_system_trust_store(self):
        """Without tls_ca_file the system's CA store is used (here pointed at
        the test CA through OpenSSL's SSL_CERT_FILE)."""
        self.serve("server")
        old = os.environ.get("SSL_CERT_FILE")
        os.environ["SSL_CERT_FILE"] = os.path.join(self.pki, "ca.pem")
        try:
            self.assert_connects("localhost", ca=None)
        finally:
            if old is None:
                del os.environ["SSL_CERT_FILE"]
            else:
                os.environ["SSL_CERT_FILE"] = old

    def test_b_wrong_ca(self):
        self.serve("server")
        self.assert_refused("localhost", "a server cert from another CA", ca="otherca")

    def test_c_hostname_mismatch(self):
        self.serve("server-dns")
        self.assert_refused("127.0.0.1", "a cert for DNS:localhost only", verify_hostname=True)

    def test_c_hostname_check_off(self):
        self.serve("server-dns")
        self.assert_connects("127.0.0.1", verify_hostname=False)

    def test_d_client_cert_required(self):
        self.serve("server", client_cert=True)
        self.assert_refused("localhost", "no client certificate")

    def test_d_client_cert_from_credential(self):
        self.serve("server", client_cert=True)
        c = self.ctx
        c.start_stub()
        creds = c.path("credentials")
        os.mkdir(creds, 0o700)
        key = os.path.join(creds, "client.key")
        shutil.copy(os.path.join(self.pki, "client.key"), key)
        os.chmod(key, 0o400)
        conf = c.write_config(prefetch=20, extra={"broker": {
            "url": self.url("localhost"), "tls_ca_file": os.path.join(self.pki, "ca.pem"),
            "tls_cert_file": os.path.join(self.pki, "client.pem"),
            "tls_key_file": "client.key"}})
        d = dlqtest.start_service_dlqd(c, conf, notify=False,
                                       env={"CREDENTIALS_DIRECTORY": creds})
        rows = dlqtest.ctl_json("list_connections", "ssl", "peer_cert_subject", env=self.env)
        note("TLS connections: %s" % rows)
        subjects = [r.get("peer_cert_subject") for r in rows if r.get("ssl") is True]
        self.assertEqual(len(subjects), 2, rows)
        self.assertTrue(all("dlqd-test-client" in str(s) for s in subjects), subjects)
        c.broker.publish(c.q, [Msg(envelope("mtls-%d" % i), key="mtls-%d" % i) for i in range(5)])
        c.wait_until(lambda: len(c.stub.successes()) == 5, 20, "5 messages over mutual TLS")
        self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    dlqtest.main()
