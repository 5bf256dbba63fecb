package settlement_test

import (
	"context"
	"testing"
)

// An instruction set to confirmed behind the run's back, pointing at an unrelated entry,
// fails the check: no payment went through operator:bank under the run's reference.
func TestCheckFindsAForgedConfirmation(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	f.day(t)
	f.nextMorning(day0)
	if _, _, err := f.runs.Run(ctx, day0, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := f.pool.Exec(ctx, `ALTER TABLE settlement_instructions DISABLE TRIGGER USER;
		UPDATE settlement_instructions SET confirmed_at = now(), payment_entry = (SELECT id FROM entries WHERE position = 1)
		 WHERE partner_id = 'fuel';
		ALTER TABLE settlement_instructions ENABLE TRIGGER USER`); err != nil {
		t.Fatal(err)
	}
	run, err := f.runs.Get(ctx, day0)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range run.Instructions {
		if p.Partner == "fuel" {
			t.Logf("fuel's instruction now reads %s, payment entry %s; in_settlement %s", p.Status, p.PaymentEntry,
				f.balance(t, "partner:fuel:in_settlement"))
		}
	}
	c, err := f.runs.Check(ctx, day0)
	if err != nil {
		t.Fatal(err)
	}
	if c.Matches {
		t.Errorf("the check matches (%d figures) although fuel's instruction is 'confirmed' with no payment through operator:bank", c.Figures)
	}
}
