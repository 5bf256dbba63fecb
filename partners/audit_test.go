package partners_test

import (
	"context"
	"testing"

	"github.com/coalitionledger/coalition/audit"
	"github.com/coalitionledger/coalition/internal/pgtest"
	"github.com/coalitionledger/coalition/partners"
)

// Each operator change commits with its audit record and the actor its context carries;
// a refused change records nothing.
func TestStoreChangesAreAuditedInTheirTransaction(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	store, keys := partners.NewStore(pool), partners.NewKeys(pool)
	ctx := audit.WithActor(context.Background(), "cli:uid 1000")
	if _, err := store.CreatePartner(ctx, "gamma", "Gamma"); err != nil {
		t.Fatal(err)
	}
	if _, err := store.CreatePartner(ctx, "gamma", "Gamma again"); err == nil {
		t.Fatal("a second gamma")
	}
	if _, err := store.SetPartnerStatus(ctx, "nobody", partners.StatusSuspended); err == nil {
		t.Fatal("suspended nobody")
	}
	id, _, err := keys.Create(ctx, partners.RolePartner, "gamma")
	if err != nil {
		t.Fatal(err)
	}
	if err := keys.Revoke(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := keys.Revoke(ctx, id); err == nil {
		t.Fatal("revoked twice")
	}
	if err := store.SetCoalition(ctx, partners.DefaultCoalition()); err != nil {
		t.Fatal(err)
	}
	events, err := audit.Log(context.Background(), pool, 0, 100, "")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range events {
		if ev.Actor != "cli:uid 1000" {
			t.Errorf("event %d by %q", ev.ID, ev.Actor)
		}
		got = append(got, ev.Action)
	}
	want := []string{audit.ActionPartnerCreated, audit.ActionKeyCreated, audit.ActionKeyRevoked, audit.ActionCoalitionChanged}
	if len(got) != len(want) {
		t.Fatalf("actions %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("actions %v, want %v", got, want)
		}
	}
}
