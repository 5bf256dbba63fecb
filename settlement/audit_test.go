package settlement_test

import (
	"context"
	"crypto/ed25519"
	"testing"

	"github.com/coalitionledger/coalition/audit"
)

// A run signs a checkpoint of the head, its own entries included, and both the run and a
// confirmation are in the audit log with who made them; all inside their transactions.
func TestRunIsCheckpointedAndAudited(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := audit.WithActor(context.Background(), "key:k1 (operator)")
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	f.runs.WithCheckpointer(audit.NewCheckpointer(f.pool, key, f.clock))
	f.day(t)
	f.nextMorning(day0)
	if _, _, err := f.runs.Run(ctx, day0, nil); err != nil {
		t.Fatal(err)
	}
	cps, err := audit.Checkpoints(ctx, f.pool, 0, 10)
	if err != nil || len(cps) != 1 || cps[0].Position != f.head(t) || cps[0].Reason != "settlement 2026-06-10" {
		t.Fatalf("checkpoints %+v %v (head %d)", cps, err, f.head(t))
	}
	if err := cps[0].Verify(key.Public().(ed25519.PublicKey)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.runs.Confirm(ctx, day0, "fuel"); err != nil {
		t.Fatal(err)
	}
	// A second run and a second confirmation, by another key, record nothing.
	other := audit.WithActor(context.Background(), "key:k2 (operator)")
	if _, _, err := f.runs.Run(other, day0, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.runs.Confirm(other, day0, "fuel"); err != nil {
		t.Fatal(err)
	}
	all, err := audit.Log(ctx, f.pool, 0, 100, "")
	var events []audit.Event
	for _, ev := range all {
		if ev.Actor != "system" { // the fixture's own set-up
			events = append(events, ev)
		}
	}
	if err != nil || len(events) != 2 {
		t.Fatalf("audit log %+v %v", events, err)
	}
	if events[0].Action != audit.ActionSettlementRun || events[1].Action != audit.ActionInstructionConfirmed ||
		events[0].Actor != "key:k1 (operator)" || events[1].Actor != "key:k1 (operator)" {
		t.Fatalf("audit log %+v", events)
	}
	if cps, _ := audit.Checkpoints(ctx, f.pool, 0, 10); len(cps) != 1 {
		t.Fatalf("a second run signed again: %+v", cps)
	}
}
