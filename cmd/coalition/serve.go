package main

import (
	"context"
	"flag"
	"os"
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
			Logger: logger, Registry: reg, Now: time.Now,
			Checkpointer: checkpointer,
		})
		jobs := scheduler.New(ctx, l, logger, time.Now).WithSettlement(ctx, settlement.NewRuns(l, store, time.Now).WithCheckpointer(checkpointer), store)
		jobs.Start()
		defer jobs.Stop()
		progress("serving the API on http://%s (Ctrl-C stops)", *addr)
		return srv.Serve(ctx, *addr)
	})
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}
