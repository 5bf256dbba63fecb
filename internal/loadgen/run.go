package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"

	"github.com/coalitionledger/coalition/internal/database"
	"github.com/coalitionledger/coalition/internal/pg"
	"github.com/coalitionledger/coalition/partners"
)

// Limits of a run.
const (
	MaxClients  = 1024
	MaxPartners = 1000
	MaxMembers  = 10_000_000
	MaxOps      = 50_000_000
	MaxDuration = 2 * time.Hour
	MaxRate     = 100_000          // open loop: operations per second
	MaxWait     = 30 * time.Minute // warm-up, pgbench's run and a write's retries
	MaxScale    = 100              // pgbench -i scale: about 1.5 GB of tables
	MaxConns    = 500              // the server's pool
	MaxCrashes  = 100              // crash mode: server kills, and PostgreSQL restarts
	// maxInFlight bounds the open loop's operations in flight; beyond it arrivals are
	// dropped and counted.
	maxInFlight = 4096
)

// Config is one run of the load tool.
type Config struct {
	// AdminURL names the PostgreSQL server; its role must be allowed to CREATE DATABASE.
	// Empty with PrivatePG: a private cluster the tool starts (needed to restart it).
	AdminURL string
	// PrivatePG starts a private PostgreSQL cluster in a temporary folder instead.
	PrivatePG bool
	Database  string // the database to create (dropped first if it exists); must start with bench_
	Keep      bool   // keep the database after the run
	Exe       string // the coalition binary that serves the API

	Seed          int64
	Partners      int
	PartnerZipf   float64 // 0: uniform
	Members       int
	MemberZipf    float64 // 0: uniform
	Mix           Mix
	Clients       int     // closed loop: this many clients
	Rate          float64 // open loop: operations per second (0: closed loop)
	Batch         int     // items per request; 1: one op per request
	Ops           int     // stop after this many operations
	Duration      time.Duration
	Warmup        time.Duration // closed loop first, not counted
	RetryFor      time.Duration // how long a write is retried after no answer or a 5xx
	PgbenchTime   time.Duration // 0: no pgbench reference
	PgbenchScale  int
	ServerKills   int // crash mode: kill -9 the server this many times during the run
	PGRestarts    int // crash mode: restart PostgreSQL (immediate shutdown) this many times
	ServerProfile string
	ServerConns   int // the server's pool size (pool_max_conns in its DATABASE_URL)
	Log           func(format string, args ...any)
}

func (c Config) crash() bool { return c.ServerKills > 0 || c.PGRestarts > 0 }

// Validate checks the bounds of a run.
func (c Config) Validate() error {
	switch {
	case c.AdminURL == "" && !c.PrivatePG:
		return errors.New("set DATABASE_URL to a PostgreSQL server whose role may CREATE DATABASE (or use --private-pg)")
	case !strings.HasPrefix(c.Database, "bench_"):
		return errors.New("the database's name must start with bench_")
	case c.Partners < 1 || c.Partners > MaxPartners:
		return fmt.Errorf("partners must be 1 to %d", MaxPartners)
	case c.Members < 1 || c.Members > MaxMembers:
		return fmt.Errorf("members must be 1 to %d", MaxMembers)
	case c.Clients < 1 || c.Clients > MaxClients:
		return fmt.Errorf("clients must be 1 to %d", MaxClients)
	case c.Batch < 1 || c.Batch > 1000:
		return errors.New("batch must be 1 to 1000")
	case c.Ops < 1 || c.Ops > MaxOps:
		return fmt.Errorf("ops must be 1 to %d", MaxOps)
	case c.Duration <= 0 || c.Duration > MaxDuration:
		return fmt.Errorf("duration must be above 0 and at most %s", MaxDuration)
	case !(c.Rate >= 0 && c.Rate <= MaxRate): // NaN too
		return fmt.Errorf("rate must be 0 (closed loop) to %d operations per second", MaxRate)
	case c.Warmup < 0 || c.Warmup > MaxWait, c.PgbenchTime < 0 || c.PgbenchTime > MaxWait, c.RetryFor < 0 || c.RetryFor > MaxWait:
		return fmt.Errorf("warmup, pgbench and retry-for must be 0 to %s", MaxWait)
	case c.PgbenchTime > 0 && c.PgbenchTime%time.Second != 0:
		return errors.New("pgbench runs for whole seconds: give --pgbench as 0 or 1s, 2s, ...")
	case c.PgbenchTime > 0 && (c.PgbenchScale < 1 || c.PgbenchScale > MaxScale):
		return fmt.Errorf("pgbench-scale must be 1 to %d", MaxScale)
	case c.ServerConns < 1 || c.ServerConns > MaxConns:
		return fmt.Errorf("server-conns must be 1 to %d", MaxConns)
	case c.ServerKills < 0 || c.ServerKills > MaxCrashes, c.PGRestarts < 0 || c.PGRestarts > MaxCrashes:
		return fmt.Errorf("kill-server and restart-pg must be 0 to %d", MaxCrashes)
	case c.Batch > 1 && c.crash():
		return errors.New("crash mode sends single requests (batch 1)")
	case c.PGRestarts > 0 && !c.PrivatePG:
		return errors.New("restarting PostgreSQL needs --private-pg: the tool never restarts a server it did not start")
	}
	if c.AdminURL != "" {
		return onLoopback(c.AdminURL)
	}
	return nil
}

// onLoopback refuses a PostgreSQL server that is not on this machine: the tool creates and
// drops databases and loads the server hard, and its figures are only comparable when the
// server, the database and the tool share one machine.
func onLoopback(url string) error {
	if os.Getenv("PGHOSTADDR") != "" {
		// pgbench would connect to it, whatever host the URL names; pgx ignores it.
		return errors.New("unset PGHOSTADDR: the load tool checks the host DATABASE_URL names, and pgbench would go to PGHOSTADDR instead")
	}
	cc, err := pgconn.ParseConfig(url)
	if err != nil {
		return fmt.Errorf("DATABASE_URL: %w", err)
	}
	hosts := []string{cc.Host}
	for _, f := range cc.Fallbacks {
		hosts = append(hosts, f.Host)
	}
	for _, h := range hosts {
		if strings.HasPrefix(h, "/") || strings.EqualFold(h, "localhost") {
			continue // a Unix socket, or the name of this machine
		}
		if ip := net.ParseIP(h); ip == nil || !ip.IsLoopback() {
			return fmt.Errorf("DATABASE_URL names host %q: the load tool runs only against a PostgreSQL server on loopback (127.0.0.1, ::1, localhost or a Unix socket)", h)
		}
	}
	return nil
}

// Run prepares the database and the server, drives the workload, checks the gates and
// measures pgbench, writing the report to out.
func Run(ctx context.Context, cfg Config, out io.Writer) error {
	if cfg.Log == nil {
		cfg.Log = func(string, ...any) {}
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	var pgc *privatePG
	adminURL := cfg.AdminURL
	if cfg.PrivatePG {
		var err error
		if pgc, err = startPrivatePG(ctx, cfg.Log); err != nil {
			return err
		}
		defer pgc.stop()
		adminURL = pgc.url("postgres")
	}
	cfg.Log("creating database %s and seeding %d partners", cfg.Database, cfg.Partners)
	// Dropped on the way out even when its creation or migration is cut short (an
	// interrupt while it is made), which IF EXISTS makes harmless when it never was.
	defer func() {
		if !cfg.Keep {
			dropDatabase(adminURL, cfg.Database)
		}
	}()
	db, err := database.Open(ctx, database.Options{URL: adminURL, Name: cfg.Database, Fresh: true, Logf: cfg.Log})
	if err != nil {
		return err
	}
	dbURL := withDatabase(adminURL, cfg.Database)
	if pgc != nil {
		dbURL = pgc.url(cfg.Database)
	}
	secrets, err := seed(ctx, db.Pool, cfg.Partners)
	db.Close()
	if err != nil {
		return err
	}

	port, err := freePort()
	if err != nil {
		return err
	}
	srv := &server{exe: cfg.Exe, addr: fmt.Sprintf("127.0.0.1:%d", port), dbURL: withPoolSize(dbURL, cfg.ServerConns),
		log: cfg.Log, profile: cfg.ServerProfile}
	if err := srv.start(ctx); err != nil {
		return err
	}
	defer srv.stop()

	st := newStats()
	w := &workload{
		cfg: cfg, stats: st, model: newModel(),
		partners: newDist(cfg.Partners, cfg.PartnerZipf), members: newDist(cfg.Members, cfg.MemberZipf), mix: newPicker(cfg.Mix),
		runID: fmt.Sprintf("b%d", time.Now().UnixNano()),
		earns: newRing[earnDone](100_000), sent: newRing[*sent](100_000), reuse: newRing[*sent](100_000),
		funded: newRing[int](100_000),
	}
	transport := &http.Transport{MaxIdleConns: 2 * cfg.Clients, MaxIdleConnsPerHost: 2 * cfg.Clients, DisableCompression: true,
		IdleConnTimeout: time.Minute}
	w.c = &client{base: "http://" + srv.addr, http: &http.Client{Transport: transport, Timeout: 60 * time.Second},
		secrets: secrets, retryFor: cfg.RetryFor, stats: st}
	fmt.Fprintf(out, "coalition bench: HTTP against `coalition serve` on %s, database %s\n", srv.addr, cfg.Database)
	fmt.Fprintf(out, "workload: seed %d, %d partners %s, %d members %s, mix %s, %s, batch %d, at most %d ops or %s\n",
		cfg.Seed, cfg.Partners, distName(cfg.PartnerZipf), cfg.Members, distName(cfg.MemberZipf), mixName(cfg.Mix, cfg.Batch),
		loopName(cfg), cfg.Batch, cfg.Ops, cfg.Duration)
	fmt.Fprintf(out, "hottest partner's share of the traffic: %.1f%%; hottest member's: %.3f%%\n",
		100*w.partners.share(), 100*w.members.share())

	if cfg.Warmup > 0 && !cfg.crash() {
		cfg.Log("warming up for %s", cfg.Warmup)
		// The warm-up shares the model and the rings, not the counters.
		ws := newStats()
		warm := &workload{cfg: cfg, stats: ws, model: w.model, partners: w.partners, members: w.members, mix: w.mix,
			runID: w.runID + "w", streamBase: 1 << 48, earns: w.earns, sent: w.sent, reuse: w.reuse, funded: w.funded,
			c: &client{base: w.c.base, http: w.c.http, secrets: secrets, retryFor: cfg.RetryFor, stats: ws}}
		warm.cfg.Ops, warm.cfg.Duration = MaxOps, cfg.Warmup
		warm.closedLoop(ctx)
	}

	var chaos sync.WaitGroup
	loadCtx, stopLoad := context.WithCancel(ctx)
	if cfg.crash() {
		chaos.Add(1)
		go func() {
			defer chaos.Done()
			crashLoop(loadCtx, cfg, srv, pgc, out)
		}()
	}
	var profiled sync.WaitGroup
	if cfg.ServerProfile != "" {
		profiled.Add(1)
		go func() {
			defer profiled.Done()
			secs := int(cfg.Duration.Seconds() / 2)
			if secs < 1 {
				secs = 1
			}
			if err := srv.writeProfile(ctx, cfg.ServerProfile, secs); err != nil {
				fmt.Fprintf(out, "server profile: %v\n", err)
			}
		}()
	}
	cfg.Log("running the workload")
	start := time.Now()
	if cfg.Rate > 0 {
		w.openLoop(loadCtx)
	} else {
		w.closedLoop(loadCtx)
	}
	elapsed := time.Since(start)
	stopLoad()
	chaos.Wait()
	sum := st.summary(elapsed)
	st.report(out, sum)
	if err := srv.alive(ctx); err != nil {
		return err
	}
	profiled.Wait()
	srv.stop()

	pool, err := pg.Connect(ctx, dbURL, 4)
	if err != nil {
		return err
	}
	passed, err := gates(ctx, pool, w, out)
	pool.Close()
	if err != nil {
		return err
	}
	if cfg.PgbenchTime > 0 {
		tps, err := pgbench(ctx, adminURL, cfg, out)
		if err != nil {
			return err
		}
		if tps > 0 {
			fmt.Fprintf(out, "ratio to pgbench tpcb-like (%d clients): applied writes %.2f×, requests %.2f×\n",
				cfg.Clients, sum.AppliedPerSec/tps, sum.RequestsPerSec/tps)
		}
	}
	if !passed {
		return errors.New("a correctness gate failed")
	}
	if st.dropped > 0 {
		// Not a correctness failure, but not a measurement of the rate asked for either.
		return fmt.Errorf("the open loop fell behind: %d arrivals were dropped with %d operations in flight, so the run did not hold %.0f ops/s; lower --rate", st.dropped, maxInFlight, cfg.Rate)
	}
	return nil
}

func distName(s float64) string {
	if s <= 0 {
		return "uniform"
	}
	return fmt.Sprintf("Zipf(%g)", s)
}

func mixName(m Mix, batch int) string {
	switch {
	case len(m) == 1 && m[OpEarn] > 0:
		return "earns"
	case batch > 1:
		// A /batch item is an earn or a redemption, and only a member's first item of the
		// batch, with points already, can redeem: the model could not predict the rest.
		return "full, as /batch items: a redemption where the mix draws one (20%) and the item's member has points and no earlier item in the batch, else an earn"
	}
	return "full (60% earn, 20% redemption, 5% hold, 5% reversal, 5% retry, 0.5% conflict, 5% read)"
}

func loopName(c Config) string {
	if c.Rate > 0 {
		return fmt.Sprintf("open loop at %.0f ops/s", c.Rate)
	}
	return fmt.Sprintf("closed loop, %d clients", c.Clients)
}

// closedLoop runs cfg.Clients workers until the operation count or the time is reached.
func (w *workload) closedLoop(parent context.Context) {
	ctx, cancel := context.WithTimeout(parent, w.cfg.Duration)
	defer cancel()
	// An operation started before the end runs to its answer: cutting it off would leave
	// the model behind a write the server may have committed.
	opCtx := context.WithoutCancel(parent)
	var issued atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < w.cfg.Clients; i++ {
		wg.Add(1)
		go func(stream uint64) {
			defer wg.Done()
			r := w.opRand(stream)
			seq := 0
			for ctx.Err() == nil && issued.Add(1) <= int64(w.cfg.Ops) {
				if w.cfg.Batch > 1 {
					w.batch(opCtx, r, stream, &seq)
				} else {
					w.op(opCtx, r, stream, &seq)
				}
			}
		}(uint64(i))
	}
	wg.Wait()
}

// openLoop starts operations at cfg.Rate per second, each with its own random stream,
// whatever the answers' latency (arrivals never wait for answers, so a server that falls
// behind shows in the latencies, which count from each request's first send).
func (w *workload) openLoop(parent context.Context) {
	ctx, cancel := context.WithTimeout(parent, w.cfg.Duration)
	defer cancel()
	opCtx := context.WithoutCancel(parent)
	var wg sync.WaitGroup
	var inFlight atomic.Int64
	dropped := 0
	interval := time.Duration(float64(time.Second) / w.cfg.Rate)
	start := time.Now()
	for i := 0; i < w.cfg.Ops && ctx.Err() == nil; i++ {
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(d):
			}
		}
		if inFlight.Load() >= maxInFlight {
			dropped++
			continue
		}
		inFlight.Add(1)
		wg.Add(1)
		go func(stream uint64) {
			defer wg.Done()
			defer inFlight.Add(-1)
			r := w.opRand(1<<32 + stream)
			seq := 0
			if w.cfg.Batch > 1 {
				w.batch(opCtx, r, 1<<32+stream, &seq)
			} else {
				w.op(opCtx, r, 1<<32+stream, &seq)
			}
		}(uint64(i))
	}
	wg.Wait()
	w.stats.add(func(s *stats) { s.dropped = dropped })
}

// seed creates the partners, a contract for each (1 point per currency unit, points
// expiring after a year, in force from an hour ago) and a partner key for each.
func seed(ctx context.Context, pool *pgxpool.Pool, n int) (map[string]string, error) {
	store, keys := partners.NewStore(pool), partners.NewKeys(pool)
	c, err := store.Coalition(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	days := 365
	one := decimal.NewFromInt(1)
	secrets := map[string]string{}
	for i := 0; i < n; i++ {
		id := partnerID(i)
		if _, err := store.CreatePartner(ctx, id, "Bench partner "+id); err != nil {
			return nil, err
		}
		k := partners.Contract{EffectiveFrom: now.Add(-time.Hour), Currency: c.Currency,
			Earn: partners.EarnRate{PointsPerUnit: &one}, ExpiryDays: &days}
		if _, err := store.AddContract(ctx, id, k, now.Add(-time.Hour)); err != nil {
			return nil, err
		}
		_, secret, err := keys.Create(ctx, partners.RolePartner, id)
		if err != nil {
			return nil, err
		}
		secrets[id] = secret
	}
	return secrets, nil
}

func dropDatabase(adminURL, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// server is a `coalition serve` process the tool started on loopback.
type server struct {
	exe, addr, dbURL string
	profile          string
	log              func(string, ...any)
	mu               sync.Mutex
	cmd              *exec.Cmd
	exited           chan struct{}
	logPath          string
	pprofAddr        string
}

func (s *server) start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.logPath == "" {
		f, err := os.CreateTemp("", "coalition-bench-server-*.log")
		if err != nil {
			return err
		}
		s.logPath = f.Name()
		f.Close()
		if s.profile != "" {
			port, err := freePort()
			if err != nil {
				return err
			}
			s.pprofAddr = fmt.Sprintf("127.0.0.1:%d", port)
		}
	}
	logf, err := os.OpenFile(s.logPath, os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.exe, "serve", "--addr", s.addr)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+s.dbURL)
	if s.pprofAddr != "" {
		cmd.Env = append(cmd.Env, "COALITION_PPROF_ADDR="+s.pprofAddr)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s serve: %w", s.exe, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(exited)
	}()
	s.cmd, s.exited = cmd, exited
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("the server exited at start; its log is %s", s.logPath)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		resp, err := http.Get("http://" + s.addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				s.log("server pid %d ready on %s (log %s)", cmd.Process.Pid, s.addr, s.logPath)
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("the server did not answer /healthz within a minute; its log is %s", s.logPath)
}

// kill sends SIGKILL to the server process and waits for it to exit.
func (s *server) kill() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// alive reports an error if the server has exited on its own.
func (s *server) alive(ctx context.Context) error {
	s.mu.Lock()
	exited := s.exited
	s.mu.Unlock()
	select {
	case <-exited:
		return fmt.Errorf("the server exited during the run; its log is %s", s.logPath)
	default:
		return nil
	}
}

// stop asks the server to shut down (SIGTERM), and kills it after 30 s.
func (s *server) stop() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-exited
	}
}

// writeProfile fetches a CPU profile of the server over the next secs seconds.
func (s *server) writeProfile(ctx context.Context, path string, secs int) error {
	if s.pprofAddr == "" {
		return nil
	}
	return fetch(ctx, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", s.pprofAddr, secs), path)
}

func fetch(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}
