package api

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/coalitionledger/coalition/audit"
	"github.com/coalitionledger/coalition/ledger"
	"github.com/coalitionledger/coalition/partners"
	"github.com/coalitionledger/coalition/settlement"
)

// Defaults and limits of the server.
const (
	// DefaultMaxBody is the default limit of a request body.
	DefaultMaxBody = 1 << 20
	// DefaultRequestTimeout is the default deadline of a request's work.
	DefaultRequestTimeout = 30 * time.Second
	// ShutdownTimeout bounds how long Serve waits for in-flight requests once its context
	// is cancelled.
	ShutdownTimeout = 30 * time.Second
	// healthTimeout bounds the database ping of /healthz.
	healthTimeout = 2 * time.Second
	// maxHeaderBytes bounds the request line and headers.
	maxHeaderBytes = 64 << 10
)

// Config is what a Server is built from. Store, Keys and Ledger are required; the rest
// have defaults.
type Config struct {
	Store    *partners.Store
	Keys     *partners.Keys
	Ledger   *ledger.Ledger
	Logger   *zap.Logger          // nil: no logging
	Registry *prometheus.Registry // nil: a new registry with the Go and process collectors
	Now      func() time.Time     // record time of contract versions; nil: time.Now
	MaxBody  int64                // bytes; 0: DefaultMaxBody
	// RequestTimeout is the deadline of each request's work; 0: DefaultRequestTimeout.
	RequestTimeout time.Duration

	// Checkpointer signs checkpoints for POST /v1/checkpoints (api/audit.go); nil: that
	// route answers 503 checkpoint_key_missing.
	Checkpointer *audit.Checkpointer
	// Writer is the group-commit writer single partner writes post through; nil: New
	// starts one with WriterConfig, which Serve's shutdown (or Close) drains.
	Writer       *ledger.Writer
	WriterConfig ledger.WriterConfig

	// PhoneRegion is the region (ISO 3166 code) of phone numbers written without a country
	// code; "": partners.NewService's default.
	PhoneRegion string
	// HoldDefault and HoldMax are a hold's expires_in when none is given and the most it
	// may be; 0: partners.NewService's defaults.
	HoldDefault, HoldMax time.Duration
}

// Server is the HTTP API.
type Server struct {
	cfg     Config
	log     *zap.Logger
	echo    *echo.Echo
	svc     *partners.Service
	runs    *settlement.Runs
	metrics *metrics
	// cache holds the partners' terms and the API keys that requests read (Serve keeps
	// it fresh; see partners.Cache).
	cache *partners.Cache
	// routes holds "METHOD /pattern" of every registered route; protected those that
	// need a key. Both are built once, by New, and only read afterwards.
	routes, protected map[string]bool
	// ownWriter is the writer New started (nil if the caller gave one): Close drains it.
	ownWriter *ledger.Writer
}

// publicRoutes need no key.
var publicRoutes = map[string]bool{
	routeKey(http.MethodGet, "/healthz"): true,
	routeKey(http.MethodGet, "/metrics"): true,
}

// routeKey names a route by method and pattern.
func routeKey(method, path string) string { return method + " " + path }

// New builds the server and its routes. It panics if Store, Keys or Ledger is missing.
func New(cfg Config) *Server {
	if cfg.Store == nil || cfg.Keys == nil || cfg.Ledger == nil {
		panic("api.New: Config needs Store, Keys and Ledger")
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
		cfg.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger,
		echo:    echo.New(),
		svc:     partners.NewService(cfg.Store, cfg.Ledger, cfg.Now),
		runs:    settlement.NewRuns(cfg.Ledger, cfg.Store, cfg.Now).WithCheckpointer(cfg.Checkpointer),
		metrics: newMetrics(cfg.Registry),
		cache:   partners.NewCache(cfg.Ledger.Pool(), cfg.Store, cfg.Keys),
	}
	if cfg.PhoneRegion != "" {
		s.svc.PhoneRegion = cfg.PhoneRegion
	}
	if cfg.HoldDefault > 0 {
		s.svc.HoldDefault = cfg.HoldDefault
	}
	if cfg.HoldMax > 0 {
		s.svc.HoldMax = cfg.HoldMax
	}
	cfg.Ledger.ObserveTerms(s.cache.Observe)
	s.startWriter()
	e := s.echo
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = handleError
	// The log's remote_ip is the peer's address: X-Forwarded-For is not trusted unless a
	// deployment behind a proxy says so.
	e.IPExtractor = echo.ExtractIPDirect()
	// Outermost first: the request id is set before anything can fail; observe answers
	// errors and logs and counts every request, panics included.
	e.Use(requestID, s.observe, recoverPanic, s.limitRequest, s.authenticate, refuseBadText)
	s.registerRoutes()
	s.routes, s.protected = map[string]bool{}, map[string]bool{}
	for _, r := range e.Routes() {
		if r.Method == echo.RouteNotFound {
			continue
		}
		k := routeKey(r.Method, r.Path)
		s.routes[k] = true
		if !publicRoutes[k] {
			s.protected[k] = true
		}
	}
	return s
}

// registerRoutes registers every route. The operator's routes are here; the partners'
// operations under /v1/partners/:partner are in partner.go.
func (s *Server) registerRoutes() {
	e := s.echo
	e.GET("/healthz", s.healthz)
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{
		ErrorLog: zap.NewStdLog(s.log), Registry: s.cfg.Registry, MaxRequestsInFlight: 4,
	})))

	operator := requireRole(partners.RoleOperator)
	reader := requireRole(partners.RoleOperator, partners.RoleAuditor)
	v1 := e.Group("/v1")
	v1.GET("/coalition", s.getCoalition, reader)
	v1.PUT("/coalition", s.putCoalition, operator)
	v1.POST("/partners", s.createPartner, operator, s.idempotentWrite)
	v1.GET("/partners", s.listPartners, reader)
	v1.GET("/keys", s.listKeys, operator)
	v1.POST("/keys", s.createKey, operator)
	v1.DELETE("/keys/:key", s.revokeKey, operator)
	v1.POST("/members", s.enrol, s.idempotentWrite)       // member.go: the operator or a partner
	v1.POST("/members/:member/awards", s.award, operator) // member.go

	g := v1.Group("/partners/:partner")
	g.GET("", s.getPartner) // the operator, an auditor, or the partner itself
	g.PATCH("", s.setPartnerStatus, operator, s.idempotentWrite)
	g.POST("/contracts", s.addContract, operator, s.idempotentWrite)
	g.GET("/contracts", s.listContracts) // the operator, an auditor, or the partner itself
	s.registerPartnerRoutes(g)
	s.registerSettlementRoutes(v1, g, operator, reader)

	// The auditor's routes: api/audit.go.
	s.registerAuditRoutes(v1)
}

// Handler returns the API as an http.Handler (the echo instance).
func (s *Server) Handler() http.Handler { return s.echo }

// Serve listens on addr (HOST:PORT) and serves the API until ctx is cancelled, then shuts
// down gracefully: it stops accepting, lets in-flight requests finish for up to
// ShutdownTimeout, and returns.
func (s *Server) Serve(ctx context.Context, addr string) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	return s.ServeListener(ctx, ln)
}

// ServeListener is Serve on a listener the caller opened (for example on port 0); it
// closes ln.
func (s *Server) ServeListener(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       s.cfg.RequestTimeout,
		WriteTimeout:      s.cfg.RequestTimeout + 10*time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          zap.NewStdLog(s.log),
		// Requests do not inherit ctx: cancelling it starts a graceful shutdown, it does
		// not abort the requests in flight.
		BaseContext: func(net.Listener) context.Context { return context.Background() },
	}
	s.log.Info("serving the API", zap.String("addr", ln.Addr().String()))
	poll, stopPoll := context.WithCancel(context.Background())
	defer stopPoll()
	go s.cache.Run(poll, 0)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	s.log.Info("shutting down: waiting for requests in flight", zap.Duration("deadline", ShutdownTimeout))
	shutdownCtx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	if serr := <-done; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if cerr := s.Close(shutdownCtx); cerr != nil && err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("shut down: %w", err)
	}
	s.log.Info("shut down")
	return nil
}

// healthz answers 200 {"status":"ok"} when the database answers a ping, else 503.
func (s *Server) healthz(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), healthTimeout)
	defer cancel()
	if err := s.cfg.Ledger.Pool().Ping(ctx); err != nil {
		c.Set(ctxInternalError, err)
		c.Set(ctxErrorCode, "unavailable")
		return c.JSON(http.StatusServiceUnavailable, map[string]string{"status": "unavailable"})
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}
