// Package orders is the demo job that both Go example handlers run
// (http-handler and exec-handler), so the two differ only in how they talk
// to dlqd.
//
// A job's payload is an order, {"order_id": "o-17", "amount_cents": 1250}.
// Handling it means "charging" it (here: a log line). What matters to dlqd is
// the verdict and how the handler reports it:
//
//	verdict         class          HTTP handler        exec handler
//	success         -              200                 exit 0
//	ORDER_INVALID   NON_RETRYABLE  422 + error_code    exit 65 (EX_DATAERR) + error_code
//	LEDGER_BUSY     TRANSIENT      503 + error_code    exit 75 (EX_TEMPFAIL) + error_code
//
// NON_RETRYABLE means "this job will never succeed, do not retry it": dlqd
// puts it in the DLQ at once. TRANSIENT means "try again later": dlqd retries
// it with backoff until the policy's max_attempt, then dead-letters it as
// RETRY_EXHAUSTED. So that the demo shows retries, an order may carry
// "simulate_busy": N: the ledger is then busy for the job's first N attempts.
package orders

import (
	"encoding/json"
	"fmt"
)

// The handler's own error codes. dlqd takes an error_code made of upper-case
// letters, digits and '_' (at most 63) and ignores anything else.
const (
	OrderInvalid = "ORDER_INVALID"
	LedgerBusy   = "LEDGER_BUSY"
)

// Failure is every verdict but success.
type Failure struct {
	Code   string `json:"error_code"`
	Class  string `json:"error_class"` // TRANSIENT, PERSISTENT or NON_RETRYABLE
	Detail string `json:"detail"`
}

func (f *Failure) Error() string { return f.Detail }

// Transient tells a failure worth retrying from one that is not.
func (f *Failure) Transient() bool { return f.Class == "TRANSIENT" }

// Report is the JSON dlqd reads the handler's verdict from: the HTTP response
// body, or the exec handler's last line on stdout.
func (f *Failure) Report() []byte {
	b, _ := json.Marshal(f) // three strings: cannot fail
	return b
}

func invalid(format string, a ...any) *Failure {
	return &Failure{OrderInvalid, "NON_RETRYABLE", fmt.Sprintf(format, a...)}
}

// Handle runs one job. payload is the bytes dlqd sent (the envelope's
// "payload", exactly as the producer wrote it); attempt counts the failures
// so far (0 on the first try). It returns the order id, or a *Failure.
func Handle(payload []byte, attempt int) (string, *Failure) {
	var order struct {
		OrderID      string `json:"order_id"`
		AmountCents  int64  `json:"amount_cents"`
		SimulateBusy int    `json:"simulate_busy"`
	}
	// A wrong type (an amount of 12.5 or "12") fails here too.
	if err := json.Unmarshal(payload, &order); err != nil {
		return "", invalid("payload: %v", err)
	}
	if order.OrderID == "" {
		return "", invalid("order_id missing")
	}
	if order.AmountCents <= 0 {
		return "", invalid("order %s: amount_cents must be a positive integer", order.OrderID)
	}
	if attempt < order.SimulateBusy {
		return "", &Failure{LedgerBusy, "TRANSIENT",
			fmt.Sprintf("order %s: ledger busy (attempt %d)", order.OrderID, attempt)}
	}
	return order.OrderID, nil
}
