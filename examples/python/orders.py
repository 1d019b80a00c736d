"""
orders: the demo job that both Python example handlers run (http_handler.py
and exec_handler.py), so the two differ only in how they talk to dlqd.

A job's payload is an order, {"order_id": "o-17", "amount_cents": 1250}.
Handling it means "charging" it (here: a log line). What matters to dlqd is
the verdict and how the handler reports it:

  verdict          class           HTTP handler          exec handler
  success          -               200                   exit 0
  ORDER_INVALID    NON_RETRYABLE   422 + error_code      exit 65 (EX_DATAERR) + error_code
  LEDGER_BUSY      TRANSIENT       503 + error_code      exit 75 (EX_TEMPFAIL) + error_code

NON_RETRYABLE means "this job will never succeed, do not retry it": dlqd
puts it in the DLQ at once. TRANSIENT means "try again later": dlqd retries
it with backoff until the policy's max_attempt, then dead-letters it as
RETRY_EXHAUSTED. So that the demo shows retries, an order may carry
"simulate_busy": N: the ledger is then busy for the job's first N attempts.
"""
import json

ORDER_INVALID = ("ORDER_INVALID", "NON_RETRYABLE")
LEDGER_BUSY = ("LEDGER_BUSY", "TRANSIENT")


class Failure(Exception):
    """A verdict other than success: (error_code, error_class) and why."""

    def __init__(self, kind, detail):
        super().__init__(detail)
        self.error_code, self.error_class = kind
        self.detail = detail

    def report(self):
        """The body dlqd reads the handler's own verdict from: the HTTP
        response body, or the exec handler's last line on stdout. error_code
        must be upper-case letters, digits and '_' (at most 63 of them), or
        dlqd ignores it."""
        return json.dumps({"error_code": self.error_code, "error_class": self.error_class,
                           "detail": self.detail})


def handle(payload, attempt):
    """Runs one job. payload: the bytes dlqd sent (the envelope's "payload",
    exactly as the producer wrote it); attempt: failures so far (0 on the
    first try). Returns the order id, or raises Failure."""
    try:
        order = json.loads(payload)
    except ValueError as e:  # dlqd only sends valid JSON objects, but be strict anyway
        raise Failure(ORDER_INVALID, "payload is not JSON: %s" % e) from None
    order_id = order.get("order_id")
    amount = order.get("amount_cents")
    if not isinstance(order_id, str) or not order_id:
        raise Failure(ORDER_INVALID, "order_id missing")
    # bool is an int in Python; an amount of true is still invalid.
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise Failure(ORDER_INVALID, "order %s: amount_cents must be a positive integer" % order_id)
    busy = order.get("simulate_busy")
    if isinstance(busy, int) and attempt < busy:
        raise Failure(LEDGER_BUSY, "order %s: ledger busy (attempt %d)" % (order_id, attempt))
    return order_id
