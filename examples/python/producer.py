#!/usr/bin/python3
"""
producer: publishes jobs to dlqd's main queue as envelopes, with python3-pika
(Debian's) and the standard library.

Reads one JSON object per line on stdin, the job's payload, and publishes it
wrapped in an envelope (docs/envelope.md, docs/envelope.schema.json):

  {"message_id": "...", "trace_id": "...", "schema_version": "v1",
   "first_seen_at": "2026-03-17T03:10:00Z", "payload": <the line, byte for byte>}

- The payload goes into the envelope as the exact bytes of the line, not
  decoded and encoded again: dlqd and the handler see what the producer
  wrote, big integers and long decimals included.
- message_id is unique per job and stays the same on every retry: the
  handler's idempotency key. Never reuse one for a different job.
- attempt, max_attempt, error_code... are dlqd's: leave them out (attempt
  defaults to 0, max_attempt to the taxonomy policy's).
- Each message is persistent (delivery_mode 2), application/json, and
  published with mandatory=True on a confirm-mode channel: the function
  returns only once the broker has the message, and a message that no queue
  takes (the main queue is missing) is an error instead of a silent drop.
- The main queue is the [pipeline] queue of dlqd's config ("jobs" by
  default), published through the default exchange. dlqd declares it (and
  its .retry / .dlx / .dlq companions) at start; this producer only checks
  that it exists.

Prints each message_id on stdout once the broker confirmed it; --dry-run
prints the envelopes instead and publishes nothing.

Usage: producer.py [--url amqp://guest:guest@127.0.0.1:5672/%2f] [--queue jobs]
                   [--schema-version v1] [--dry-run] < jobs.jsonl
"""
import argparse
import datetime
import json
import sys
import uuid

try:
    import pika
    import pika.exceptions
except ImportError:
    pika = None


def envelope(payload_line, schema_version):
    """(envelope bytes, message_id) for one payload (the bytes of a JSON object)."""
    payload = payload_line.strip()
    # dlqd refuses (INVALID_ENVELOPE) a payload that is not an object: say so
    # here, at the producer, where the mistake can still be fixed.
    if not isinstance(json.loads(payload), dict):
        raise ValueError("a payload must be a JSON object")
    head = {
        "message_id": "ord-" + uuid.uuid4().hex,
        "trace_id": "trc-" + uuid.uuid4().hex[:16],
        "schema_version": schema_version,
        "first_seen_at": datetime.datetime.now(datetime.timezone.utc)
                                          .strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    # The head without its closing brace, then the payload's own bytes.
    body = json.dumps(head, separators=(",", ":"))[:-1].encode() + b',"payload":' + payload + b"}"
    return body, head["message_id"]


def main():
    ap = argparse.ArgumentParser(description="Publish stdin's JSON lines as dlqd jobs.")
    ap.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/%2f")
    ap.add_argument("--queue", default="jobs", help="dlqd's [pipeline] queue")
    ap.add_argument("--schema-version", default="v1")
    ap.add_argument("--dry-run", action="store_true", help="print the envelopes, publish nothing")
    args = ap.parse_args()

    jobs = []
    for n, line in enumerate(sys.stdin.buffer, 1):
        if line.strip():
            try:
                jobs.append(envelope(line, args.schema_version))
            except ValueError as e:
                sys.exit("producer: stdin line %d: %s" % (n, e))
    if args.dry_run:
        for body, _ in jobs:
            sys.stdout.buffer.write(body + b"\n")
        return 0
    if pika is None:
        sys.exit("producer: python3-pika is not installed")

    connection = pika.BlockingConnection(pika.URLParameters(args.url))
    channel = connection.channel()
    try:
        channel.queue_declare(args.queue, passive=True)
    except pika.exceptions.ChannelClosedByBroker:
        sys.exit("producer: queue %r does not exist: start dlqd first (it declares its "
                 "topology) or declare it as dlqd would" % args.queue)
    channel.confirm_delivery()  # basic_publish now waits for the broker's ack
    for body, message_id in jobs:
        try:
            channel.basic_publish(
                exchange="", routing_key=args.queue, body=body, mandatory=True,
                properties=pika.BasicProperties(
                    delivery_mode=pika.spec.PERSISTENT_DELIVERY_MODE,  # 2: survives a broker restart
                    content_type="application/json",
                    message_id=message_id))
        except pika.exceptions.UnroutableError:
            sys.exit("producer: %s was returned unroutable (queue %r gone?)" % (message_id, args.queue))
        except pika.exceptions.NackError:
            sys.exit("producer: the broker refused %s (nack): publish it again" % message_id)
        print(message_id, flush=True)
    connection.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
