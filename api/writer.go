package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/coalitionledger/coalition/ledger"
)

// CodeOverloaded: the server's write queue is full or it is shutting down; nothing was
// written. Retry after the Retry-After header's seconds, with the same Idempotency-Key
// (503).
const CodeOverloaded ledger.Code = "overloaded"

// retryAfterSeconds is the Retry-After of an answer that asks for a retry (retryLater),
// and of a /batch answer holding one.
const retryAfterSeconds = "1"

// startWriter gives the service the group-commit writer: the configured one, or one the
// server starts and owns, with its batches counted in the metrics.
func (s *Server) startWriter() {
	w := s.cfg.Writer
	if w == nil {
		batches := register(s.cfg.Registry, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "coalition_writer_batch_entries",
			Help:    "Entries per shared transaction of the group-commit writer.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000},
		}))
		took := register(s.cfg.Registry, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "coalition_writer_batch_seconds",
			Help:    "Time to post one shared transaction of the group-commit writer, from BEGIN to COMMIT.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .25, .5, 1, 5},
		}))
		wc := s.cfg.WriterConfig
		wc.OnBatch = func(size int, d time.Duration, _ error) {
			batches.Observe(float64(size))
			took.Observe(d.Seconds())
		}
		w = ledger.NewWriter(s.cfg.Ledger, wc)
		s.ownWriter = w
	}
	s.svc.Writer = w
}

// Close drains and stops the writer the server started (Serve calls it on shutdown).
func (s *Server) Close(ctx context.Context) error {
	if s.ownWriter == nil {
		return nil
	}
	return s.ownWriter.Close(ctx)
}

// overloaded is the answer to a write the writer could not take, or sent back because
// the terms kept changing under it.
func overloaded(err error) (int, errorResponse, bool) {
	var msg string
	switch {
	case errors.Is(err, ledger.ErrWriterFull):
		msg = "the server has too many writes waiting; nothing was written: retry after Retry-After seconds with the same Idempotency-Key"
	case errors.Is(err, ledger.ErrWriterClosed):
		msg = "the server is shutting down; nothing was written: retry with the same Idempotency-Key"
	case errors.Is(err, ledger.ErrTermsChanged):
		msg = "the partner's terms or the coalition's settings kept changing while the request was priced; nothing was written: retry with the same Idempotency-Key"
	default:
		return 0, errorResponse{}, false
	}
	return http.StatusServiceUnavailable, errorResponse{errorPayload{Code: CodeOverloaded, Message: msg, Details: map[string]any{}}}, true
}
