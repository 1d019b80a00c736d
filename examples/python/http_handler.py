#!/usr/bin/python3
"""
http_handler: an HTTP endpoint for dlqd's http handler ([handler] type =
http, url = http://HOST:PORT/jobs), Python standard library only.

What dlqd sends (design.md, "Handlers"): one POST per job attempt, body =
the envelope's payload bytes, with
  Content-Type: application/json
  Idempotency-Key: <message_id>   the same on every retry of the job
  X-Attempt: <attempt>            failures so far, 0 on the first try
  X-Trace-Id: <trace_id>          when the envelope has one
What dlqd understands in the answer:
  2xx                             success: the message is acked
  anything else                   failure, classified by the taxonomy from the
                                  status and, when the body is a JSON object
                                  {"error_code": "X", "error_class": "Y"},
                                  from the handler's own code (a taxonomy rule
                                  "when": {"handler_code": ["X"]}, or X with
                                  class Y when no rule matches)
  Retry-After                     on a failure, the earliest retry
The verdicts are orders.py's; examples/README.md shows the run.

Usage: http_handler.py [--listen 127.0.0.1:8080]
"""
import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orders

# Delivery is at least once: after a crash or a lost ack dlqd may send a job
# again. The message id is the idempotency key; a real service keeps it in
# its database with the effect, this demo in memory.
done = set()
done_lock = threading.Lock()


def log(**fields):
    print(" ".join("%s=%s" % kv for kv in fields.items()), file=sys.stderr, flush=True)


class JobHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: dlqd reuses its connections

    def do_POST(self):
        if self.path != "/jobs":
            self.answer(404, {"detail": "POST jobs to /jobs"})
            return
        message_id = self.headers.get("Idempotency-Key", "")
        attempt = int(self.headers.get("X-Attempt", "0"))
        payload = self.rfile.read(int(self.headers.get("Content-Length", "0")))

        with done_lock:
            if message_id in done:
                log(message_id=message_id, attempt=attempt, verdict="ok", note="already-done")
                self.answer(200, {"status": "already done"})
                return
        try:
            order_id = orders.handle(payload, attempt)
        except orders.Failure as f:
            log(message_id=message_id, attempt=attempt, verdict=f.error_code)
            # The status is what the taxonomy sees first; error_code in the
            # body lets dlqd (and the operator reading the DLQ) know why.
            status = 503 if f.error_class == "TRANSIENT" else 422
            self.answer(status, f.report(), raw=True)
            return
        with done_lock:
            done.add(message_id)
        log(message_id=message_id, attempt=attempt, verdict="ok", order=order_id)
        self.answer(200, {"status": "charged", "order_id": order_id})

    def answer(self, status, body, raw=False):
        data = (body if raw else json.dumps(body)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        pass  # one line per job from do_POST instead of the access log


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT (default %(default)s)")
    args = ap.parse_args()
    host, _, port = args.listen.rpartition(":")
    server = ThreadingHTTPServer((host, int(port)), JobHandler)
    log(event="listening", url="http://%s:%d/jobs" % server.server_address[:2])
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
