package ledger_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/coalitionledger/coalition/internal/pg"
	"github.com/coalitionledger/coalition/internal/pgtest"
	"github.com/coalitionledger/coalition/ledger"
)

// commitCutter is a TCP proxy in front of PostgreSQL that, once armed, cuts the client's
// connection at its first COMMIT: either after the server got it (the client never reads
// the answer) or before.
type commitCutter struct {
	ln       net.Listener
	dial     func() (net.Conn, error)
	armed    atomic.Bool
	afterSrv bool // forward the COMMIT to the server before cutting
	cut      chan struct{}
	once     sync.Once
}

func newCommitCutter(t *testing.T, cfg *pgconn.Config, afterServer bool) *commitCutter {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &commitCutter{ln: ln, afterSrv: afterServer, cut: make(chan struct{})}
	c.dial = func() (net.Conn, error) {
		if strings.HasPrefix(cfg.Host, "/") {
			return net.Dial("unix", fmt.Sprintf("%s/.s.PGSQL.%d", cfg.Host, cfg.Port))
		}
		return net.Dial("tcp", net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port)))
	}
	t.Cleanup(func() { ln.Close() })
	go c.serve()
	return c
}

func (c *commitCutter) serve() {
	for {
		client, err := c.ln.Accept()
		if err != nil {
			return
		}
		server, err := c.dial()
		if err != nil {
			client.Close()
			continue
		}
		replied := make(chan struct{})
		var dropping atomic.Bool
		go func() {
			// Server to client: once the COMMIT has gone through, its answer is swallowed
			// and the client's connection closed instead.
			defer client.Close()
			buf := make([]byte, 32<<10)
			for {
				n, err := server.Read(buf)
				if dropping.Load() {
					close(replied)
					return
				}
				if err != nil {
					return
				}
				if _, err := client.Write(buf[:n]); err != nil {
					return
				}
			}
		}()
		go c.pump(client, server, &dropping, replied)
	}
}

// pump copies the client's messages to the server, watching for COMMIT.
func (c *commitCutter) pump(client, server net.Conn, dropping *atomic.Bool, replied chan struct{}) {
	defer server.Close()
	defer client.Close()
	// The startup message has no type byte.
	var n int32
	if binary.Read(client, binary.BigEndian, &n) != nil {
		return
	}
	startup := make([]byte, n-4)
	if _, err := io.ReadFull(client, startup); err != nil {
		return
	}
	binary.Write(server, binary.BigEndian, n)
	server.Write(startup)
	// Statements are prepared (Parse) apart from being run (Bind, Execute), and a COMMIT may
	// travel in a pipeline that ends at its Sync: the cut comes where a COMMIT is bound,
	// and, after the server, once the pipeline's Sync is through.
	commits := map[string]bool{} // prepared statements that are a COMMIT
	forwardToSync := false
	for {
		head := make([]byte, 5)
		if _, err := io.ReadFull(client, head); err != nil {
			return
		}
		body := make([]byte, binary.BigEndian.Uint32(head[1:])-4)
		if _, err := io.ReadFull(client, body); err != nil {
			return
		}
		isCommit := false
		switch head[0] {
		case 'Q':
			isCommit = bytes.Contains(bytes.ToLower(body), []byte("commit"))
		case 'P': // name, query
			if parts := bytes.SplitN(body, []byte{0}, 3); len(parts) == 3 && bytes.Contains(bytes.ToLower(parts[1]), []byte("commit")) {
				commits[string(parts[0])] = true
			}
		case 'B': // portal, statement
			if parts := bytes.SplitN(body, []byte{0}, 3); len(parts) == 3 {
				isCommit = commits[string(parts[1])]
			}
		}
		if isCommit && c.armed.CompareAndSwap(true, false) {
			dropping.Store(true)
			if !c.afterSrv {
				c.once.Do(func() { close(c.cut) })
				return
			}
			forwardToSync = head[0] != 'Q'
			if !forwardToSync {
				c.finishCut(server, append(head, body...), replied)
				return
			}
		}
		if forwardToSync && head[0] == 'S' {
			c.finishCut(server, append(head, body...), replied)
			return
		}
		if _, err := server.Write(append(head, body...)); err != nil {
			return
		}
	}
}

// finishCut sends the last message of a COMMIT to the server, lets the server finish the
// commit (its answer is never passed on), and cuts.
func (c *commitCutter) finishCut(server net.Conn, last []byte, replied chan struct{}) {
	server.Write(last)
	select {
	case <-replied:
	case <-time.After(10 * time.Second):
	}
	c.once.Do(func() { close(c.cut) })
}

func testCutCommit(t *testing.T, afterServer bool) {
	url := pgtest.URL(t)
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cutter := newCommitCutter(t, &cfg.Config, afterServer)
	addr := cutter.ln.Addr().(*net.TCPAddr)
	proxied := fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s sslmode=disable", addr.Port, cfg.User, cfg.Database)
	// A proxy gone wrong must fail the test, not hang the suite.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	viaProxy, err := pg.Connect(ctx, proxied, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer viaProxy.Close()
	direct, err := pg.Connect(ctx, url, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()

	cutter.armed.Store(true)
	_, err = ledger.New(viaProxy, ledger.WithClock(newClock(t0).Now)).PostOne(ctx, earn("m", "a", "10", "till-42"))
	if err == nil {
		t.Fatal("the post succeeded though its connection was cut at COMMIT")
	}
	<-cutter.cut
	// The till retries with the same key, on another connection.
	l := ledger.New(direct, ledger.WithClock(newClock(t0).Now))
	res, err := l.Post(ctx, []ledger.Entry{earn("m", "a", "10", "till-42")})
	if err != nil || res[0].Err != nil {
		t.Fatalf("retry: %v %v", err, res[0].Err)
	}
	if res[0].Replayed != afterServer {
		t.Fatalf("retry replayed = %v, want %v", res[0].Replayed, afterServer)
	}
	var entries int
	if err := direct.QueryRow(ctx, `SELECT count(*) FROM entries`).Scan(&entries); err != nil {
		t.Fatal(err)
	}
	if entries != 1 {
		t.Fatalf("%d entries after a cut commit and a retry, want exactly 1", entries)
	}
	wantBalance(t, l, "member:m", "-10")
	sound(t, l)
}

func TestConnectionCutAfterCommitSentThenRetry(t *testing.T) {
	t.Parallel()
	testCutCommit(t, true)
}

func TestConnectionCutBeforeCommitThenRetry(t *testing.T) {
	t.Parallel()
	testCutCommit(t, false)
}

// The database itself refuses to rewrite the journal, whoever asks.
func TestJournalIsAppendOnly(t *testing.T) {
	t.Parallel()
	l, _ := open(t)
	mustPost(t, l, earn("m", "a", "10", ""))
	ctx := context.Background()
	for _, stmt := range []string{
		`UPDATE entries SET kind = 'award'`,
		`DELETE FROM entries`,
		`TRUNCATE entries CASCADE`,
		`UPDATE postings SET amount = amount * 2`,
		`DELETE FROM postings`,
		`TRUNCATE postings`,
		`UPDATE lot_movements SET points = 1`,
		`DELETE FROM lot_movements`,
	} {
		if _, err := l.Pool().Exec(ctx, stmt); err == nil {
			t.Errorf("%s: accepted", stmt)
		}
	}
	// An unbalanced posting written behind the engine's back is refused too.
	_, err := l.Pool().Exec(ctx, `INSERT INTO postings (position, seq, entry_id, account, unit, amount)
		SELECT position, 9, id, 'partner:a:issued', 'PTS', 5 FROM entries LIMIT 1`)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23514" {
		t.Fatalf("unbalanced insert: %v", err)
	}
	sound(t, l)
}

// A change made with the triggers switched off (as a superuser can) breaks the chain at
// that entry.
func TestVerifyFindsTampering(t *testing.T) {
	t.Parallel()
	l, _ := open(t)
	for i := 0; i < 5; i++ {
		mustPost(t, l, earn("m", "a", "10", ""))
	}
	ctx := context.Background()
	conn, err := l.Pool().Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SET session_replication_role = replica`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `UPDATE postings SET amount = amount * 2 WHERE position = 3`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `SET session_replication_role = origin`); err != nil {
		t.Fatal(err)
	}
	err = l.VerifyChain(ctx, nil)
	var br *ledger.ChainBreak
	if !errors.As(err, &br) || br.Position != 3 {
		t.Fatalf("verify = %v, want a break at position 3", err)
	}
}
