package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"

	"github.com/coalitionledger/coalition/api"
	"github.com/coalitionledger/coalition/audit"
	"github.com/coalitionledger/coalition/internal/database"
	"github.com/coalitionledger/coalition/internal/scheduler"
	"github.com/coalitionledger/coalition/ledger"
	"github.com/coalitionledger/coalition/partners"
	"github.com/coalitionledger/coalition/settlement"
)

// serve runs the HTTP API with the scheduler inside until ctx ends (SIGINT, SIGTERM).
func serve(ctx context.Context, fs *flag.FlagSet, args []string,
	withDB func(string, bool, func(*database.DB) error) error, progress func(string, ...any)) error {
	addr := fs.String("addr", envOr("COALITION_ADDR", "127.0.0.1:8080"), "HOST:PORT to listen on (env COALITION_ADDR)")
	var wc ledger.WriterConfig
	fs.IntVar(&wc.MaxBatch, "writer-batch", envInt("COALITION_WRITER_BATCH", ledger.DefaultWriterBatch),
		"most single writes the group-commit writer puts in one transaction (env COALITION_WRITER_BATCH)")
	fs.IntVar(&wc.Flushers, "writer-flushers", envInt("COALITION_WRITER_FLUSHERS", ledger.DefaultWriterFlushers),
		"shared transactions in flight at once (env COALITION_WRITER_FLUSHERS)")
	fs.DurationVar(&wc.Window, "writer-window", envDuration("COALITION_WRITER_WINDOW", ledger.DefaultWriterWindow),
		"how long a batch that is not full waits for more writes (env COALITION_WRITER_WINDOW)")
	fs.IntVar(&wc.Queue, "writer-queue", envInt("COALITION_WRITER_QUEUE", ledger.DefaultWriterQueue),
		"writes that may wait; beyond it a write is a 503 overloaded (env COALITION_WRITER_QUEUE)")
	phoneRegion := fs.String("phone-region", envOr("COALITION_PHONE_REGION", "US"),
		"region (ISO 3166 code) of phone numbers written without a country code (env COALITION_PHONE_REGION)")
	holdDefault := fs.Duration("hold-default", envDuration("COALITION_HOLD_DEFAULT", 15*time.Minute),
		"a hold's expires_in when the request gives none (env COALITION_HOLD_DEFAULT)")
	holdMax := fs.Duration("hold-max", envDuration("COALITION_HOLD_MAX", 24*time.Hour),
		"the longest expires_in a hold may ask for (env COALITION_HOLD_MAX)")
	window := ledger.DefaultWindow
	fs.DurationVar(&window.Past, "window-past", envDuration("COALITION_WINDOW_PAST", window.Past),
		"how far back a request's business_time may lie (env COALITION_WINDOW_PAST)")
	fs.DurationVar(&window.Future, "window-future", envDuration("COALITION_WINDOW_FUTURE", window.Future),
		"how far ahead a request's business_time may lie (env COALITION_WINDOW_FUTURE)")
	keyRetention := fs.Duration("key-retention", envDuration("COALITION_KEY_RETENTION", ledger.DefaultKeyRetention),
		"how long idempotency keys (and their first answers) are kept at least, 720h (30 days) or more (env COALITION_KEY_RETENTION)")
	keyPath := checkpointKeyFlag(fs) // audit.go
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := checkServeSettings(*phoneRegion, *holdDefault, *holdMax, window, *keyRetention); err != nil {
		return err
	}
	if os.Getenv("GOGC") == "" {
		// The live heap is tens of megabytes and every request allocates: collecting at five
		// times the live heap rather than twice took a sixth of the server's CPU off its
		// garbage collection (docs/BENCHMARKS.md). GOGC, when set, decides.
		debug.SetGCPercent(serveGCPercent)
	}
	// The checkpoint signing key, made on first start: POST /v1/checkpoints and every
	// settlement run sign with it.
	key, _, err := signingKey(keyPath, progress)
	if err != nil {
		return err
	}
	logger, err := zap.NewProduction()
	if err != nil {
		return err
	}
	defer logger.Sync() //nolint:errcheck // stderr may be closed at exit
	return withDB("", false, func(db *database.DB) error {
		l := ledger.New(db.Pool, ledger.WithWindow(window))
		checkpointer := audit.NewCheckpointer(db.Pool, key, time.Now) // signs on demand (and after settlement runs)
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		store := partners.NewStore(db.Pool)
		srv := api.New(api.Config{
			Store: store, Keys: partners.NewKeys(db.Pool), Ledger: l,
			Logger: logger, Registry: reg, Now: time.Now, WriterConfig: wc,
			Checkpointer: checkpointer, PhoneRegion: *phoneRegion, HoldDefault: *holdDefault, HoldMax: *holdMax,
		})
		if addr := os.Getenv("COALITION_PPROF_ADDR"); addr != "" {
			servePprof(ctx, addr, logger)
		}
		// Bound before anything starts or says it serves: a port in use is the one error.
		var lc net.ListenConfig
		ln, err := lc.Listen(ctx, "tcp", *addr)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", *addr, err)
		}
		jobs := scheduler.New(ctx, l, logger, time.Now, *keyRetention).WithSettlement(ctx, settlement.NewRuns(l, store, time.Now).WithCheckpointer(checkpointer), store)
		jobs.Start()
		defer jobs.Stop()
		progress("serving the API on http://%s (Ctrl-C stops)", ln.Addr())
		return srv.ServeListener(ctx, ln)
	})
}

// serveGCPercent is the server's GOGC unless the environment sets one.
const serveGCPercent = 400

// checkServeSettings refuses settings that would make every request fail or make no sense.
func checkServeSettings(region string, holdDefault, holdMax time.Duration, w ledger.Window, keyRetention time.Duration) error {
	if keyRetention < ledger.DefaultKeyRetention {
		return usageError{fmt.Sprintf("--key-retention %s is below 720h: idempotency keys are kept at least 30 days", keyRetention)}
	}
	if !partners.KnownRegion(region) {
		return usageError{fmt.Sprintf("--phone-region %q is not a region code such as US, GB or RU", region)}
	}
	if holdDefault <= 0 || holdMax <= 0 || holdDefault > holdMax {
		return usageError{fmt.Sprintf("--hold-default (%s) and --hold-max (%s) must be above zero, the default at most the maximum", holdDefault, holdMax)}
	}
	if w.Past < 0 || w.Future < 0 {
		return usageError{"--window-past and --window-future may not be negative"}
	}
	return nil
}

func envInt(name string, fallback int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return n
	}
	return fallback
}

func envDuration(name string, fallback time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil {
		return d
	}
	return fallback
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

// servePprof serves net/http/pprof on addr (loopback only, for `coalition bench
// --server-profile`) until ctx ends.
func servePprof(ctx context.Context, addr string, logger *zap.Logger) {
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		logger.Warn("COALITION_PPROF_ADDR must be a loopback HOST:PORT; not serving pprof", zap.String("addr", addr))
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Warn("pprof", zap.Error(err))
		}
	}()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
}
