package loadgen

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"
)

// stats is what a run counted. Latencies are kept per request (with its retries).
type stats struct {
	mu         sync.Mutex
	latencies  []time.Duration
	ops        map[OpKind]int // operations run, by kind
	requests   int            // HTTP requests answered (a batch is one)
	items      int            // write items sent (a single write is one; a batch holds N)
	applied    int            // writes that posted a new entry
	replays    int            // retries the server answered as replays
	codes      map[string]int // error answers by code
	retries    int            // requests sent again after no answer or a 5xx
	retryCause map[string]int
	noAnswer   int // operations given up without an answer

	substituted int // redemptions, holds, reversals or reads with nothing to act on, run as earns

	// The correctness the clients see.
	retryMismatch     int // a retry whose answer differed from the first
	retryChecked      int
	conflictsRefused  int // same key, other body: 409 idempotency_conflict
	conflictsAccepted int // ... anything else
	dropped           int // open loop: arrivals not sent, the operations in flight at their bound
	designedFail      int // redemptions and holds sized above the balance
	designedFailOK    int // ... refused with insufficient_points
	unexpected        int // an answer the model did not predict
	unexpectedSamples []string
}

func newStats() *stats {
	return &stats{ops: map[OpKind]int{}, codes: map[string]int{}, retryCause: map[string]int{}}
}

func (s *stats) retried(a answer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.retries++
	cause := "no answer"
	if a.err == nil {
		cause = fmt.Sprintf("%d %s", a.status, a.code())
	}
	s.retryCause[cause]++
}

// answered records one request's final answer and its latency.
func (s *stats) answered(a answer, took time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	s.latencies = append(s.latencies, took)
	if a.err != nil {
		s.noAnswer++
		return
	}
	if a.status >= 400 {
		s.codes[a.code()]++
	}
	if a.replayed {
		s.replays++
	}
}

func (s *stats) add(f func(s *stats)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

// surprise records an answer the model did not predict, keeping a few for the report.
func (s *stats) surprise(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unexpected++
	if len(s.unexpectedSamples) < 10 {
		s.unexpectedSamples = append(s.unexpectedSamples, fmt.Sprintf(format, args...))
	}
}

// Summary is a run's figures.
type Summary struct {
	Elapsed        time.Duration
	Requests       int
	Items          int
	Applied        int
	P50, P95, P99  time.Duration
	RequestsPerSec float64
	AppliedPerSec  float64
	ItemsPerSec    float64
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p * float64(len(sorted)-1))
	return sorted[i]
}

func (s *stats) summary(elapsed time.Duration) Summary {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := append([]time.Duration(nil), s.latencies...)
	sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
	sec := elapsed.Seconds()
	return Summary{
		Elapsed: elapsed, Requests: s.requests, Items: s.items, Applied: s.applied,
		P50: percentile(l, 0.50), P95: percentile(l, 0.95), P99: percentile(l, 0.99),
		RequestsPerSec: float64(s.requests) / sec, AppliedPerSec: float64(s.applied) / sec, ItemsPerSec: float64(s.items) / sec,
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (s *stats) report(w io.Writer, sum Summary) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(w, "elapsed %.1fs: %d requests (%.0f/s), %d write items (%.0f/s), %d applied (%.0f/s)\n",
		sum.Elapsed.Seconds(), sum.Requests, sum.RequestsPerSec, sum.Items, sum.ItemsPerSec, sum.Applied, sum.AppliedPerSec)
	fmt.Fprintf(w, "latency per request: p50 %s  p95 %s  p99 %s\n", ms(sum.P50), ms(sum.P95), ms(sum.P99))
	var ops []string
	for _, k := range []OpKind{OpEarn, OpRedeem, OpHold, OpReversal, OpRetry, OpConflict, OpRead} {
		if s.ops[k] > 0 {
			ops = append(ops, fmt.Sprintf("%s %d", k, s.ops[k]))
		}
	}
	subs := ""
	if s.substituted > 0 {
		subs = fmt.Sprintf(" (%d had nothing to act on and ran as earns)", s.substituted)
	}
	fmt.Fprintf(w, "operations: %s%s\n", strings.Join(ops, ", "), subs)
	var codes []string
	for _, c := range sortedKeys(s.codes) {
		codes = append(codes, fmt.Sprintf("%s %d", c, s.codes[c]))
	}
	fmt.Fprintf(w, "rejects by code: %s\n", orNone(strings.Join(codes, ", ")))
	var causes []string
	for _, c := range sortedKeys(s.retryCause) {
		causes = append(causes, fmt.Sprintf("%s: %d", c, s.retryCause[c]))
	}
	fmt.Fprintf(w, "retries after no answer or a 5xx: %d (%s); operations given up: %d; replays answered: %d\n",
		s.retries, orNone(strings.Join(causes, ", ")), s.noAnswer, s.replays)
	fmt.Fprintf(w, "redemptions and holds designed to fail: %d, refused insufficient_points: %d\n", s.designedFail, s.designedFailOK)
	if s.dropped > 0 {
		fmt.Fprintf(w, "open loop fell behind: %d arrivals dropped (at most %d operations in flight); the rate above is what the server sustained\n", s.dropped, maxInFlight)
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d.Microseconds())/1000) }
