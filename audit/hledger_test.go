package audit_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/coalitionledger/coalition/audit"
)

// hledger, reading our export, agrees with our trial balance to the last unit. Skipped
// when hledger is not installed (Debian: apt-get install hledger).
func TestHledgerAgreesWithTheTrialBalance(t *testing.T) {
	t.Parallel()
	bin, err := exec.LookPath("hledger")
	if err != nil {
		t.Skip("hledger is not installed")
	}
	f := newFixture(t)
	ctx := context.Background()
	f.traffic()
	if _, err := f.cp.Checkpoint(ctx, "for the export"); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "export.journal")
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := audit.Export(ctx, f.pool, out, audit.ExportOptions{Format: audit.FormatHledger, PublicKey: f.cp.PublicKey()}); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, bin, "-f", path, "balance", "--flat", "-O", "csv")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	raw, err := cmd.Output()
	if err != nil {
		t.Fatalf("hledger: %v\n%s", err, stderr.String())
	}
	rows, err := csv.NewReader(bytes.NewReader(raw)).ReadAll()
	if err != nil {
		t.Fatalf("hledger's CSV: %v\n%s", err, raw)
	}
	got := map[string]string{}
	for _, r := range rows[1:] {
		if r[0] == "total" {
			if r[1] != "0" {
				t.Errorf("hledger's total is %s, want 0", r[1])
			}
			continue
		}
		got[r[0]] = r[1]
	}
	tb, err := f.l.TrialBalance(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, a := range tb.Accounts {
		if a.Balance.IsZero() {
			continue
		}
		scale := int32(0)
		if a.Unit != "PTS" {
			scale = 2
		}
		want[a.Account] = a.Balance.StringFixed(scale) + " " + a.Unit
	}
	if len(want) < 8 {
		t.Fatalf("the trial balance has only %d non-zero accounts: the traffic is too thin", len(want))
	}
	for acct, w := range want {
		if got[acct] != w {
			t.Errorf("%s: hledger %q, trial balance %q", acct, got[acct], w)
		}
	}
	for acct, g := range got {
		if _, ok := want[acct]; !ok {
			amount, _, _ := strings.Cut(g, " ")
			if d, err := decimal.NewFromString(amount); err != nil || !d.IsZero() {
				t.Errorf("hledger has %s = %s, which the trial balance does not", acct, g)
			}
		}
	}
}
