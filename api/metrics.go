package api

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the server's Prometheus collectors.
type metrics struct {
	requests *prometheus.CounterVec   // coalition_http_requests_total{method,route,status}
	duration *prometheus.HistogramVec // coalition_http_request_duration_seconds{method,route}
	errors   *prometheus.CounterVec   // coalition_http_errors_total{code}
	entries  *prometheus.CounterVec   // coalition_entries_posted_total{kind}
}

// newMetrics registers the collectors with reg. A second server on the same registry
// shares the first one's collectors.
func newMetrics(reg prometheus.Registerer) *metrics {
	return &metrics{
		requests: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "coalition_http_requests_total",
			Help: "HTTP requests answered, by method, route pattern and status.",
		}, []string{"method", "route", "status"})),
		duration: register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "coalition_http_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by method and route pattern.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"method", "route"})),
		errors: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "coalition_http_errors_total",
			Help: "HTTP error answers, by error code.",
		}, []string{"code"})),
		entries: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "coalition_entries_posted_total",
			Help: "Journal entries posted through the API, by kind.",
		}, []string{"kind"})),
	}
}

// register registers c with reg, or returns the collector already registered in its place.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var already prometheus.AlreadyRegisteredError
		if errors.As(err, &already) {
			if existing, ok := already.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic("api: register metric: " + err.Error())
	}
	return c
}

// countEntry counts one journal entry of the kind posted through the API; a replay is
// not a new entry and is not counted.
func (s *Server) countEntry(kind string, replayed bool) {
	if !replayed {
		s.metrics.entries.WithLabelValues(kind).Inc()
	}
}
