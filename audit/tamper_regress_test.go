package audit_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coalitionledger/coalition/audit"
	"github.com/coalitionledger/coalition/ledger"
	"github.com/coalitionledger/coalition/partners"
)

// verifyDB verifies the database with the fixture's key.
func reviewVerifyDB(t *testing.T, f *fixture) *audit.Verification {
	t.Helper()
	v, err := audit.VerifyDatabase(context.Background(), f.pool, audit.VerifyOptions{PublicKey: f.cp.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func reviewExport(t *testing.T, f *fixture) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := audit.Export(context.Background(), f.pool, &buf, audit.ExportOptions{Format: audit.FormatJSONL, PublicKey: f.cp.PublicKey()}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// A superuser adds less than half a unit to both postings of an entry (and to the stored
// balances). The canonical form used to round amounts to the unit's scale, so every hash
// still matched ("salami"); now such an amount is hashed and exported whole, and both
// verifications fail at that entry.
func TestSubUnitAmountTamperIsCaught(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.traffic()
	tamper(t, f,
		`UPDATE accounts a SET balance = a.balance + 0.4 * sign(p.amount) FROM postings p WHERE p.position = 1 AND p.account = a.name`,
		`UPDATE postings SET amount = amount + 0.4 * sign(amount) WHERE position = 1`)
	var amt string
	if err := f.pool.QueryRow(context.Background(), `SELECT amount::text FROM postings WHERE position = 1 AND seq = 0`).Scan(&amt); err != nil {
		t.Fatal(err)
	}
	v := reviewVerifyDB(t, f)
	if v.OK || v.Failure.Position != 1 {
		t.Errorf("verify over the database, amounts changed to %s: %+v, want a failure at position 1", amt, v.Failure)
	}
	ex, err := audit.VerifyExport(bytes.NewReader(reviewExport(t, f)), audit.VerifyOptions{PublicKey: f.cp.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	if ex.OK || ex.Failure.Position != 1 {
		t.Errorf("verify over the export (ok=%v, %+v) disagrees with verify over the database (ok=%v, %+v)", ex.OK, ex.Failure, v.OK, v.Failure)
	}
}

// The lots table (issuer, remaining, expires_at) is what consumption and settlement read;
// verify used to pass a lot moved to another issuer (the next redemption would bill the
// wrong partner in a hashed, signed entry). It now checks every lot against its movements.
func TestLotTamperIsCaught(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.traffic()
	tamper(t, f, `UPDATE lots SET issuer = 'electro' WHERE issuer = 'fuelco'`)
	v := reviewVerifyDB(t, f)
	if v.OK || !strings.Contains(v.Failure.Reason, "lot ") {
		t.Errorf("verify after every fuelco lot was handed to electro: %+v, want a lot failure", v.Failure)
	}
}

// Only the first MaxCheckpoints (10 000) checkpoints are read by verify and export; a
// rewrite of the journal after the 10 000th checkpoint's position, rehashed and with the
// head moved along, passes verify although checkpoint 10 001 signed the original hash.
func TestCheckpointsPast10000AreChecked(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	// 10 000 valid checkpoints of the empty journal (one signature, stored 10 000 times).
	cp := audit.Checkpoint{Position: 0, Hash: hex.EncodeToString(ledger.GenesisHash), SignedAt: t0, Reason: "filler"}
	msg, err := cp.SignedBytes()
	if err != nil {
		t.Fatal(err)
	}
	sig := ed25519.Sign(f.key, msg)
	if _, err := f.pool.Exec(ctx, `INSERT INTO checkpoints (position, hash, signed_at, reason, public_key, signature)
		SELECT 0, $1, $2, 'filler', $3, $4 FROM generate_series(1, $5)`, ledger.GenesisHash, t0, []byte(f.cp.PublicKey()), sig, audit.MaxCheckpoints); err != nil {
		t.Fatal(err)
	}
	head := f.traffic()
	if _, err := f.cp.Checkpoint(ctx, "after the traffic"); err != nil {
		t.Fatal(err)
	}
	if v := reviewVerifyDB(t, f); !v.OK {
		t.Fatalf("before tampering: %+v", v.Failure)
	}
	// Rewrite the last entry and rehash it, as someone who can write the database can.
	page, err := f.l.Journal(ctx, head-1, 1)
	if err != nil {
		t.Fatal(err)
	}
	e := page[0]
	e.Metadata = json.RawMessage(`{"rewritten":"yes"}`)
	units, err := f.l.Units(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := ledger.EntryHash(&e, units)
	if err != nil {
		t.Fatal(err)
	}
	tamper(t, f, `UPDATE entries SET metadata = '{"rewritten":"yes"}', hash = '\x`+hex.EncodeToString(sum)+`' WHERE position = `+itoa(head),
		`UPDATE journal_head SET hash = '\x`+hex.EncodeToString(sum)+`'`)
	v := reviewVerifyDB(t, f)
	if v.OK {
		t.Errorf("verify passes a rewritten entry %d that checkpoint %d signed (it read %d of %d checkpoints)", head, audit.MaxCheckpoints+1, v.Checkpoints, audit.MaxCheckpoints+1)
	}
	ex, err := audit.VerifyExport(bytes.NewReader(reviewExport(t, f)), audit.VerifyOptions{PublicKey: f.cp.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	if ex.OK {
		t.Errorf("verify over the export passes too: the export holds %d checkpoints", ex.Checkpoints)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// An entry inserted at head+1 without moving the journal head (appended without the
// chain) used to be invisible to verify, which reads up to the head; now verify fails at
// that position.
func TestEntryPastTheHeadIsCaught(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	head := f.traffic()
	tamper(t, f,
		`INSERT INTO entries (id, position, kind, partner_id, member_id, reference, business_time, recorded_at, metadata, reverses, prev_hash, hash)
		 SELECT 'forged', `+itoa(head+1)+`, kind, partner_id, member_id, NULL, business_time, recorded_at, metadata, NULL, hash, hash FROM entries WHERE position = 1`,
		`INSERT INTO postings (position, seq, entry_id, account, unit, amount, member_id)
		 SELECT `+itoa(head+1)+`, seq, 'forged', account, unit, amount, member_id FROM postings WHERE position = 1`)
	v := reviewVerifyDB(t, f)
	if v.OK || v.Failure.Position != head+1 {
		t.Errorf("verify with an entry at position %d past the head %d: %+v", head+1, head, v.Failure)
	}
}

// VerifyExport decodes lines with encoding/json, which matches keys case-insensitively and
// keeps the last duplicate, and it stops reading at the end record. An export whose entry
// line carries forged "postings" ahead of the real ones under "POSTINGS", or that has lines
// after its end record, verifies — while jq and the hledger re-derivation of AUDIT.md read
// the forged figures.
func TestExportLinesOtherToolsReadDifferentlyAreRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.traffic()
	raw := reviewExport(t, f)
	lines := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
	for i, line := range lines {
		var rec audit.EntryRecord
		if json.Unmarshal([]byte(line), &rec) != nil || rec.Type != "entry" || rec.Position != 1 {
			continue
		}
		forged := make([]audit.PostingRecord, len(rec.Postings))
		for j, p := range rec.Postings {
			forged[j] = p
			forged[j].Amount = p.Amount + "0" // 100 → 1000
		}
		fj, _ := json.Marshal(forged)
		lines[i] = strings.Replace(line, `"postings":`, `"postings":`+string(fj)+`,"POSTINGS":`, 1)
		var m map[string]any
		if err := json.Unmarshal([]byte(lines[i]), &m); err != nil {
			t.Fatal(err)
		}
		t.Logf("what jq reads as .postings of entry 1: %v", m["postings"])
	}
	t.Run("case-insensitive duplicate key", func(t *testing.T) {
		v, err := audit.VerifyExport(strings.NewReader(strings.Join(lines, "\n")+"\n"), audit.VerifyOptions{PublicKey: f.cp.PublicKey()})
		if err == nil && v.OK {
			t.Errorf("verify passes an entry line whose \"postings\" are forged (the real ones hidden under \"POSTINGS\")")
		}
	})
	t.Run("lines after the end record", func(t *testing.T) {
		extra := string(raw) + `{"type":"entry","position":99,"kind":"earn","postings":[{"account":"partner:fuelco:issued","unit":"PTS","amount":"1000000"},{"account":"operator:fees","unit":"PTS","amount":"-1000000"}]}` + "\n"
		v, err := audit.VerifyExport(strings.NewReader(extra), audit.VerifyOptions{PublicKey: f.cp.PublicKey()})
		if err == nil && v.OK {
			t.Errorf("verify passes an export with an entry after its end record")
		}
	})
}

// Breakage values an unexpire at the contract in force at the reversal's business time,
// not at the rate the points were expired at (and reads the rates from the contracts
// table, outside the journal): points that expired and were all taken back out of breakage
// net to zero points but to a non-zero value.
func TestBreakageOfAnUnexpiredLotNetsToZero(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	earn := f.earn("grocer", "2", "40") // 40 points, expire after 10 days, redeem rate 0.02
	f.now = f.now.Add(11 * 24 * time.Hour)
	f.expire()
	f.now = f.now.Add(time.Hour)
	k := partners.Contract{Earn: partners.EarnRate{PointsPerUnit: ptr(dec("1"))}, ExpiryDays: ptr(10), RedeemRate: ptr(dec("0.05")),
		EffectiveFrom: f.now, Currency: "USD"}
	if _, err := f.store.AddContract(ctx, "grocer", k, f.now); err != nil {
		t.Fatal(err)
	}
	f.now = f.now.Add(time.Hour)
	if _, err := f.svc.Reverse(ctx, f.req("grocer"), partners.ReverseInput{Entry: earn.Entry.ID}); err != nil {
		t.Fatal(err)
	}
	b, err := audit.NewReports(f.pool).Breakage(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if b.Total.Net != "0" || b.Total.Value != "0.00" {
		t.Errorf("breakage: net %s points worth %s (want 0 points worth 0.00): %+v", b.Total.Net, b.Total.Value, b.Issuers)
	}
}
