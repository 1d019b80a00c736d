// Command http-handler is an HTTP endpoint for dlqd's http handler
// ([handler] type = http, url = http://HOST:PORT/jobs), standard library only.
//
// What dlqd sends (design.md, "Handlers"): one POST per job attempt, body =
// the envelope's payload bytes, with
//
//	Content-Type: application/json
//	Idempotency-Key: <message_id>   the same on every retry of the job
//	X-Attempt: <attempt>            failures so far, 0 on the first try
//	X-Trace-Id: <trace_id>          when the envelope has one
//
// What dlqd understands in the answer:
//
//	2xx            success: the message is acked
//	anything else  failure, classified by the taxonomy from the status and,
//	               when the body is a JSON object {"error_code": "X",
//	               "error_class": "Y"}, from the handler's own code (a taxonomy
//	               rule "when": {"handler_code": ["X"]}, or X with class Y when
//	               no rule matches)
//	Retry-After    on a failure, the earliest retry
//
// The verdicts are package orders'; examples/README.md shows the run.
//
// Usage: http-handler [-listen 127.0.0.1:8080]
package main

import (
	"encoding/json"
	"flag"
	"io"
	"log"
	"net/http"
	"strconv"
	"sync"

	"dlqdexample/orders"
)

// maxPayload bounds what one request may make us read: dlqd's own default
// [pipeline] max_message_size.
const maxPayload = 16 << 20

// Delivery is at least once: after a crash or a lost ack dlqd may send a job
// again. The message id is the idempotency key; a real service keeps it in
// its database with the effect, this demo in memory.
type server struct {
	mu   sync.Mutex
	done map[string]bool
}

func (s *server) jobs(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		answer(w, http.StatusMethodNotAllowed, []byte(`{"detail":"POST jobs here"}`))
		return
	}
	messageID := r.Header.Get("Idempotency-Key")
	attempt, _ := strconv.Atoi(r.Header.Get("X-Attempt"))
	payload, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxPayload))
	if err != nil {
		// Not the job's fault: a transient failure without a code of ours,
		// which the taxonomy classifies by the status.
		answer(w, http.StatusServiceUnavailable, nil)
		return
	}

	s.mu.Lock()
	seen := s.done[messageID]
	s.mu.Unlock()
	if seen {
		log.Printf("message_id=%s attempt=%d verdict=ok note=already-done", messageID, attempt)
		answer(w, http.StatusOK, []byte(`{"status":"already done"}`))
		return
	}
	orderID, f := orders.Handle(payload, attempt)
	if f != nil {
		log.Printf("message_id=%s attempt=%d verdict=%s", messageID, attempt, f.Code)
		// The status is what the taxonomy sees first; error_code in the body
		// lets dlqd (and the operator reading the DLQ) know why.
		status := http.StatusUnprocessableEntity
		if f.Transient() {
			status = http.StatusServiceUnavailable
		}
		answer(w, status, f.Report())
		return
	}
	s.mu.Lock()
	s.done[messageID] = true
	s.mu.Unlock()
	log.Printf("message_id=%s attempt=%d verdict=ok order=%s", messageID, attempt, orderID)
	body, _ := json.Marshal(map[string]string{"status": "charged", "order_id": orderID})
	answer(w, http.StatusOK, body)
}

func answer(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body)
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "HOST:PORT to listen on")
	flag.Parse()
	log.SetFlags(0) // journald or the caller adds timestamps

	s := &server{done: make(map[string]bool)}
	mux := http.NewServeMux()
	mux.HandleFunc("/jobs", s.jobs)
	log.Printf("event=listening url=http://%s/jobs", *listen)
	log.Fatal(http.ListenAndServe(*listen, mux))
}
