package main

import (
	"context"
	"errors"
	"flag"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
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
	keyPath := checkpointKeyFlag(fs) // audit.go
	if err := fs.Parse(args); err != nil {
		return err
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
		l := ledger.New(db.Pool)
		checkpointer := audit.NewCheckpointer(db.Pool, key, time.Now) // signs on demand (and after settlement runs)
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		store := partners.NewStore(db.Pool)
		srv := api.New(api.Config{
			Store: store, Keys: partners.NewKeys(db.Pool), Ledger: l,
			Logger: logger, Registry: reg, Now: time.Now, WriterConfig: wc,
			Checkpointer: checkpointer,
		})
		if addr := os.Getenv("COALITION_PPROF_ADDR"); addr != "" {
			servePprof(ctx, addr, logger)
		}
		jobs := scheduler.New(ctx, l, logger, time.Now).WithSettlement(ctx, settlement.NewRuns(l, store, time.Now).WithCheckpointer(checkpointer), store)
		jobs.Start()
		defer jobs.Stop()
		progress("serving the API on http://%s (Ctrl-C stops)", *addr)
		return srv.Serve(ctx, *addr)
	})
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
