package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/coalitionledger/coalition/internal/loadgen"
)

// bench runs the load tool: `coalition serve` started on loopback over a fresh bench_
// database, the workload over HTTP, the correctness gates, and pgbench for reference.
func bench(ctx context.Context, fs *flag.FlagSet, args []string, dbURL *string, stdout io.Writer, progress func(string, ...any)) error {
	cfg := loadgen.Config{Log: progress}
	var partnerDist, memberDist, mix string
	fs.Int64Var(&cfg.Seed, "seed", 1, "seed of the workload")
	fs.IntVar(&cfg.Partners, "partners", 40, "partners")
	fs.StringVar(&partnerDist, "partner-dist", "zipf", "partners drawn zipf (s=1.1) or uniform")
	fs.IntVar(&cfg.Members, "members", 1_000_000, "members (enrolled on their first earn, by card)")
	fs.StringVar(&memberDist, "member-dist", "zipf", "members drawn zipf (s=0.8) or uniform")
	fs.StringVar(&mix, "mix", "full", "full (60% earn, 20% redemption, 5% hold, 5% reversal, 5% retry, 0.5% conflict, 5% read) or earns")
	fs.IntVar(&cfg.Clients, "clients", 32, "closed loop: concurrent clients (and pgbench's client count)")
	fs.Float64Var(&cfg.Rate, "rate", 0, "open loop: operations per second (0: closed loop)")
	fs.IntVar(&cfg.Batch, "batch", 1, "items per request: 1 sends one operation per request, N>1 sends /batch requests of N earns and redemptions")
	fs.IntVar(&cfg.Ops, "ops", 1_000_000, "stop after this many operations (requests when batching)")
	fs.DurationVar(&cfg.Duration, "duration", 30*time.Second, "stop after this long")
	fs.DurationVar(&cfg.Warmup, "warmup", 5*time.Second, "closed loop first for this long, not counted")
	fs.DurationVar(&cfg.RetryFor, "retry-for", 10*time.Second, "retry a write with the same key after no answer or a 5xx for this long")
	fs.DurationVar(&cfg.PgbenchTime, "pgbench", 20*time.Second, "run pgbench tpcb-like this long afterwards (0: not at all)")
	fs.IntVar(&cfg.PgbenchScale, "pgbench-scale", 10, "pgbench -i scale")
	fs.IntVar(&cfg.ServerKills, "kill-server", 0, "crash mode: kill -9 the server this many times during the run")
	fs.IntVar(&cfg.PGRestarts, "restart-pg", 0, "crash mode: restart PostgreSQL (immediate shutdown) this many times; needs --private-pg")
	fs.BoolVar(&cfg.PrivatePG, "private-pg", false, "run on a private PostgreSQL cluster in a temporary folder instead of DATABASE_URL's server")
	fs.StringVar(&cfg.Database, "database", fmt.Sprintf("bench_%d", os.Getpid()), "database to create for the run (name starts with bench_)")
	fs.BoolVar(&cfg.Keep, "keep", false, "keep the database after the run")
	fs.IntVar(&cfg.ServerConns, "server-conns", 32, "the server's database pool size")
	fs.StringVar(&cfg.ServerProfile, "server-profile", "", "write a CPU profile of the server over the first half of the run to this file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg.AdminURL = *dbURL
	if cfg.PrivatePG {
		cfg.AdminURL = ""
		if cfg.PgbenchTime > 0 {
			// pgbench's figure is only comparable on the server the figures of record use.
			progress("--private-pg: no pgbench reference (it runs only beside DATABASE_URL's server)")
		}
		cfg.PgbenchTime = 0
	}
	dists := map[string]float64{"uniform": 0}
	ps, ok := dists[partnerDist]
	if partnerDist == "zipf" {
		ps, ok = 1.1, true
	}
	ms, ok2 := dists[memberDist]
	if memberDist == "zipf" {
		ms, ok2 = 0.8, true
	}
	if !ok || !ok2 {
		return usageError{"--partner-dist and --member-dist take zipf or uniform"}
	}
	cfg.PartnerZipf, cfg.MemberZipf = ps, ms
	switch mix {
	case "full":
		cfg.Mix = loadgen.FullMix
	case "earns":
		cfg.Mix = loadgen.EarnsMix
	default:
		return usageError{"--mix takes full or earns"}
	}
	if cfg.ServerKills > 0 || cfg.PGRestarts > 0 {
		cfg.Warmup = 0
		if cfg.RetryFor < time.Minute {
			cfg.RetryFor = time.Minute
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cfg.Exe = exe
	if err := cfg.Validate(); err != nil {
		return usageError{err.Error()}
	}
	if err := loadgen.Run(ctx, cfg, stdout); err != nil {
		return err
	}
	if cfg.Keep {
		progress("kept database %s", cfg.Database)
	}
	return nil
}
