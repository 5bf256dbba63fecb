package demo

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/coalitionledger/coalition/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// A small demo runs end to end: the traffic posts, the run settles and re-derives, the
// journal verifies, and the report files are written.
func TestDemoRunsEndToEnd(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	dir := t.TempDir()
	err := Run(context.Background(), pgtest.Pool(t), &out, Options{Members: 200, Earns: 600, ReportDir: dir})
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, want := range []string{
		"200 members enrolled", "earns                   600 posted", "Payment instructions, netted through the operator:",
		"all equal.", "hash chain intact", dir + "/settlement-", ".csv",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the demo's output lacks %q:\n%s", want, out.String())
		}
	}
}
