package audit_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/csv"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coalitionledger/coalition/audit"
)

// A part of the journal exports and verifies on its own: from the hash its header gives
// for the entry before it, without balances; a change inside it fails where it is.
func TestPartialExport(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	f.traffic()
	if _, err := f.cp.Checkpoint(ctx, "at the head"); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	sum, err := audit.Export(ctx, f.pool, &buf, audit.ExportOptions{Format: audit.FormatJSONL, From: 3, To: 5})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Entries != 3 || sum.Complete {
		t.Fatalf("summary = %+v", sum)
	}
	raw := buf.String()
	v, err := audit.VerifyExport(strings.NewReader(raw), audit.VerifyOptions{PublicKey: f.cp.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	if !v.OK || v.From != 3 || v.To != 5 || v.Entries != 3 || v.BalancesChecked || v.Checkpoints != 0 {
		t.Fatalf("verification = %+v %+v", v, v.Failure)
	}
	// Change one posting's amount in the file: verify fails at its entry.
	lines := strings.Split(raw, "\n")
	for i, l := range lines {
		if strings.Contains(l, `"position":4,`) && strings.HasPrefix(l, `{"type":"entry"`) {
			lines[i] = strings.Replace(l, `"amount":"30"`, `"amount":"31"`, 1)
		}
	}
	v, err = audit.VerifyExport(strings.NewReader(strings.Join(lines, "\n")), audit.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v.OK || v.Failure.Position != 4 {
		t.Fatalf("a changed amount: %+v %+v", v, v.Failure)
	}
	// A file cut short is refused: its end record is missing.
	if _, err := audit.VerifyExport(strings.NewReader(strings.Join(strings.Split(raw, "\n")[:2], "\n")), audit.VerifyOptions{}); err == nil ||
		!strings.Contains(err.Error(), "cut short") {
		t.Fatalf("a file cut short: %v", err)
	}
}

// The CSV export is one row per entry, posting, lot movement, checkpoint and balance.
func TestCSVExport(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	head := f.traffic()
	if _, err := f.cp.Checkpoint(ctx, "csv"); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := audit.Export(ctx, f.pool, &buf, audit.ExportOptions{Format: audit.FormatCSV}); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, r := range rows[1:] {
		if len(r) != len(audit.CSVColumns) {
			t.Fatalf("row %v has %d columns", r, len(r))
		}
		count[r[0]]++
	}
	var postings, movements, accounts int
	for _, q := range []struct {
		sql string
		n   *int
	}{{`SELECT count(*) FROM postings`, &postings}, {`SELECT count(*) FROM lot_movements`, &movements}, {`SELECT count(*) FROM accounts`, &accounts}} {
		if err := f.pool.QueryRow(ctx, q.sql).Scan(q.n); err != nil {
			t.Fatal(err)
		}
	}
	if count["entry"] != int(head) || count["posting"] != postings || count["movement"] != movements ||
		count["checkpoint"] != 1 || count["balance"] != accounts {
		t.Fatalf("rows = %v; want %d entries, %d postings, %d movements, 1 checkpoint, %d balances", count, head, postings, movements, accounts)
	}
}

// The audit log and the checkpoints are append-only for everyone.
func TestAuditTablesAreAppendOnly(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	if err := audit.Record(ctx, f.pool, "cli:test", audit.ActionPartnerCreated, map[string]string{"id": "x"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.cp.Checkpoint(ctx, "append-only"); err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{
		`UPDATE audit_log SET actor = 'someone else'`, `DELETE FROM audit_log`, `TRUNCATE audit_log`,
		`UPDATE checkpoints SET reason = 'other'`, `DELETE FROM checkpoints`, `TRUNCATE checkpoints`,
	} {
		if _, err := f.pool.Exec(ctx, sql); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: %v", sql, err)
		}
	}
	all, err := audit.Log(ctx, f.pool, 0, 100, "")
	var events []audit.Event
	for _, ev := range all {
		if ev.Actor != "system" { // the fixture's own set-up
			events = append(events, ev)
		}
	}
	if err != nil || len(events) != 1 || events[0].Actor != "cli:test" || string(events[0].Details) != `{"id": "x"}` {
		t.Fatalf("events = %+v %v", events, err)
	}
	// Bad records are refused before they reach the database.
	for _, bad := range []struct{ actor, action string }{{"", "x.y"}, {"me", "Not An Action"}} {
		if err := audit.Record(ctx, f.pool, bad.actor, bad.action, nil); err == nil {
			t.Errorf("Record(%q, %q) succeeded", bad.actor, bad.action)
		}
	}
}

// The signing key is made once, with its public key beside it, and read back the same.
func TestCheckpointKeyFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "keys", "checkpoint.key")
	key, created, err := audit.LoadOrCreateKey(path)
	if err != nil || !created {
		t.Fatalf("first: %v %v", created, err)
	}
	again, created, err := audit.LoadOrCreateKey(path)
	if err != nil || created || !again.Equal(key) {
		t.Fatalf("second: %v %v", created, err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v %v", st.Mode(), err)
	}
	// The folder it made lets the embedded PostgreSQL's server (another user) reach the
	// data folder beside the key.
	if dir, err := os.Stat(filepath.Dir(path)); err != nil || dir.Mode().Perm()&0o001 == 0 {
		t.Fatalf("key folder mode %v %v", dir.Mode(), err)
	}
	pub, err := audit.LoadPublicKey(audit.PublicKeyPath(path))
	if err != nil || !pub.Equal(key.Public().(ed25519.PublicKey)) {
		t.Fatalf("public key: %v", err)
	}
	if got := audit.DefaultKeyPath("/var/lib/coalition/pgdata"); os.Getenv(audit.KeyFileEnv) == "" && got != "/var/lib/coalition/checkpoint.key" {
		t.Fatalf("default path = %s", got)
	}
	var none *audit.Checkpointer
	if _, err := none.Checkpoint(context.Background(), "no key"); !errors.Is(err, audit.ErrNoKey) {
		t.Fatalf("a nil checkpointer: %v", err)
	}
	if err := (&audit.Checkpoint{Position: 1, Hash: "00", PublicKey: "zz"}).Verify(nil); err == nil {
		t.Fatal("a checkpoint with a bad key verifies")
	}
}
