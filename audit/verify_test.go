package audit_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/coalitionledger/coalition/audit"
)

// verifyBoth verifies the database and an export of it and fails unless both say the same.
func verifyBoth(t *testing.T, f *fixture, pub ed25519.PublicKey) *audit.Verification {
	t.Helper()
	ctx := context.Background()
	db, err := audit.VerifyDatabase(ctx, f.pool, audit.VerifyOptions{PublicKey: pub})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := audit.Export(ctx, f.pool, &buf, audit.ExportOptions{Format: audit.FormatJSONL, PublicKey: pub}); err != nil {
		t.Fatal(err)
	}
	ex, err := audit.VerifyExport(&buf, audit.VerifyOptions{PublicKey: pub})
	if err != nil {
		t.Fatal(err)
	}
	ex.Source = db.Source
	if (db.Failure == nil) != (ex.Failure == nil) || (db.Failure != nil && *db.Failure != *ex.Failure) || *db != *ex && db.Failure == nil {
		t.Fatalf("verify over the database and over its export differ:\ndb:     %+v %+v\nexport: %+v %+v", db, db.Failure, ex, ex.Failure)
	}
	return db
}

func TestVerifySoundJournal(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.cp.Checkpoint(ctx, "empty journal"); err != nil {
		t.Fatal(err)
	}
	head := f.traffic()
	cp, err := f.cp.Checkpoint(ctx, "on demand")
	if err != nil {
		t.Fatal(err)
	}
	if cp.Position != head {
		t.Fatalf("checkpoint at %d, head at %d", cp.Position, head)
	}
	v := verifyBoth(t, f, f.cp.PublicKey())
	if !v.OK || v.Entries != head || v.Checkpoints != 2 || !v.BalancesChecked || v.Accounts == 0 {
		t.Fatalf("verification = %+v, failure %+v", v, v.Failure)
	}
	// Another key's view: the checkpoints are not signed by it.
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	v = verifyBoth(t, f, other.Public().(ed25519.PublicKey))
	if v.OK || v.Failure.Position != 0 || !strings.Contains(v.Failure.Reason, "not by the trusted key") {
		t.Fatalf("verification with another key = %+v, failure %+v", v, v.Failure)
	}
}

// tamper changes the database as a superuser with the triggers off.
func tamper(t *testing.T, f *fixture, sql ...string) {
	t.Helper()
	err := pgx.BeginFunc(context.Background(), f.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(context.Background(), `SET LOCAL session_replication_role = replica`); err != nil {
			return err
		}
		for _, s := range sql {
			if _, err := tx.Exec(context.Background(), s); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("tamper: %v", err)
	}
}

// Every change a superuser makes to the journal behind the triggers' back makes verify fail
// at the position of the row changed, from the database and from an export alike.
func TestTamperingFailsAtItsPosition(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		sql        []string
		position   int64 // 0: the head
		reason     string
		checkpoint bool // take a checkpoint before tampering
	}{
		{name: "amount", sql: []string{`UPDATE postings SET amount = amount * 2 WHERE position = 4 AND seq = 1`,
			`UPDATE postings SET amount = amount * 2 WHERE position = 4 AND seq = 2`}, position: 4, reason: "does not match its hash"},
		{name: "account", sql: []string{`UPDATE postings SET account = 'partner:electro:redeemed' WHERE position = 4 AND account = 'partner:grocer:redeemed'`},
			position: 4, reason: "does not match its hash"},
		{name: "metadata byte", sql: []string{`UPDATE entries SET metadata = jsonb_set(metadata, '{tampered}', '1') WHERE position = 2`},
			position: 2, reason: "does not match its hash"},
		{name: "metadata character", sql: []string{`UPDATE entries SET metadata = replace(metadata::text, '"USD"', '"USE"')::jsonb WHERE position = 5`},
			position: 5, reason: "does not match its hash"},
		{name: "swapped postings", sql: []string{
			`UPDATE postings SET seq = 100 WHERE position = 4 AND seq = 0`, `UPDATE postings SET seq = 0 WHERE position = 4 AND seq = 1`,
			`UPDATE postings SET seq = 1 WHERE position = 4 AND seq = 100`}, position: 4, reason: "does not match its hash"},
		{name: "lot movement", sql: []string{`UPDATE lot_movements SET points = points - 1 WHERE position = 4 AND seq = 0`},
			position: 4, reason: "does not match its hash"},
		{name: "deleted posting", sql: []string{`DELETE FROM postings WHERE position = 3 AND seq = 1`},
			position: 3, reason: "does not match its hash"},
		{name: "deleted entry", sql: []string{
			`DELETE FROM postings WHERE position = 6`, `DELETE FROM lot_movements WHERE position = 6`,
			`DELETE FROM entries WHERE position = 6`}, position: 6, reason: "missing"},
		{name: "swapped order", sql: []string{
			`UPDATE entries SET position = 1000000 WHERE position = 2`, `UPDATE entries SET position = 2 WHERE position = 3`,
			`UPDATE entries SET position = 3 WHERE position = 1000000`,
			`UPDATE postings SET position = 1000000 WHERE position = 2`, `UPDATE postings SET position = 2 WHERE position = 3`,
			`UPDATE postings SET position = 3 WHERE position = 1000000`,
			`UPDATE lot_movements SET position = 1000000 WHERE position = 2`, `UPDATE lot_movements SET position = 2 WHERE position = 3`,
			`UPDATE lot_movements SET position = 3 WHERE position = 1000000`}, position: 2, reason: "previous hash"},
		{name: "stored balance", sql: []string{`UPDATE accounts SET balance = balance + 1 WHERE name = 'partner:fuelco:issued'`},
			reason: "stored balance"},
		{name: "last entry cut off", checkpoint: true, sql: []string{
			`UPDATE journal_head SET position = position - 1, hash = (SELECT prev_hash FROM entries e WHERE e.position = journal_head.position)`,
			`DELETE FROM postings WHERE position = (SELECT max(position) FROM entries)`,
			`DELETE FROM lot_movements WHERE position = (SELECT max(position) FROM entries)`,
			`DELETE FROM entries WHERE position = (SELECT max(position) FROM entries)`},
			reason: "checkpoint"},
		{name: "checkpoint", checkpoint: true, sql: []string{`UPDATE checkpoints SET reason = 'something else'`},
			reason: "signature does not match"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			head := f.traffic()
			if c.checkpoint {
				if _, err := f.cp.Checkpoint(context.Background(), "before tampering"); err != nil {
					t.Fatal(err)
				}
			}
			if v := verifyBoth(t, f, f.cp.PublicKey()); !v.OK {
				t.Fatalf("before tampering: %+v", v.Failure)
			}
			tamper(t, f, c.sql...)
			v := verifyBoth(t, f, f.cp.PublicKey())
			if v.OK {
				t.Fatal("verify passes a tampered journal")
			}
			want := c.position
			if want <= 0 {
				want = head
			}
			if v.Failure.Position != want || !strings.Contains(v.Failure.Reason, c.reason) {
				t.Fatalf("failure = %+v, want position %d and a reason with %q", v.Failure, want, c.reason)
			}
		})
	}
}
