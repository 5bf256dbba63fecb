package partners_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/coalitionledger/coalition/internal/pgtest"
	"github.com/coalitionledger/coalition/partners"
)

// A change this process makes is seen at once; one made elsewhere may be missed by a read
// until the cache learns the new version, but never by a write: the writer sends an entry
// priced on old terms back, and it is priced again on the new ones.
func TestCachedTermsNeverPriceAWrite(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t)
	f := newCoalitionOn(t, pool)
	cache := partners.NewCache(pool, f.store, partners.NewKeys(pool))
	f.l.ObserveTerms(cache.Observe)

	first, err := f.svc.Earn(ctx, f.req("fuelco", "e1"), partners.EarnInput{
		Member: partners.MemberRef{Card: "5001"}, Purchase: partners.Purchase{Amount: dec("1000"), Currency: "RUB"}})
	if err != nil || first.Points != "100" {
		t.Fatalf("first earn: %+v %v", first, err)
	}

	// Another process (a store without this cache) adds a version that doubles the rate.
	elsewhere := partners.NewStore(pool)
	k := partners.Contract{Earn: partners.EarnRate{PointsPerUnit: ptr(dec("0.2"))}, ExpiryDays: ptr(365), RedeemRate: ptr(dec("1")),
		FeePerPoint: dec("0.2"), EffectiveFrom: f.now, Currency: "RUB"}
	if _, err := elsewhere.AddContract(ctx, "fuelco", k, f.now); err != nil {
		t.Fatal(err)
	}
	if terms, err := f.store.Terms(ctx, "fuelco"); err != nil || len(terms.Versions) != 1 {
		t.Fatalf("the cache read the change already (%v); the test shows nothing", err)
	}
	second, err := f.svc.Earn(ctx, f.req("fuelco", "e2"), partners.EarnInput{
		Member: partners.MemberRef{Card: "5001"}, Purchase: partners.Purchase{Amount: dec("1000"), Currency: "RUB"}})
	if err != nil || second.Points != "200" || !second.Pricing.ContractEffectiveFrom.Equal(f.now) {
		t.Fatalf("earn after the change: %+v %v; want 200 points on the version effective at %s", second, err, f.now)
	}
	if terms, err := f.store.Terms(ctx, "fuelco"); err != nil || len(terms.Versions) != 2 {
		t.Fatalf("the cache still serves the old terms after the writer saw the new version (%v)", err)
	}
	var entries int
	pool.QueryRow(ctx, `SELECT count(*) FROM entries`).Scan(&entries)
	if entries != 2 {
		t.Fatalf("%d entries, want 2", entries)
	}

	// A change through the cached store is seen at once.
	k.EffectiveFrom = f.now.Add(time.Minute)
	k.Earn = partners.EarnRate{PointsPerUnit: ptr(dec("0.3"))}
	if _, err := f.store.AddContract(ctx, "fuelco", k, f.now); err != nil {
		t.Fatal(err)
	}
	if terms, err := f.store.Terms(ctx, "fuelco"); err != nil || len(terms.Versions) != 3 {
		t.Fatalf("a change of this process is not seen at once (%v)", err)
	}
}

// A revoked key stops working at once when this process revokes it, and as soon as the
// cache learns the new terms version when another one does.
func TestCachedKeysFollowRevocation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t)
	f := newCoalitionOn(t, pool)
	keys := partners.NewKeys(pool)
	cache := partners.NewCache(pool, f.store, keys)

	id, secret, err := keys.Create(ctx, partners.RolePartner, "fuelco")
	if err != nil {
		t.Fatal(err)
	}
	if p, err := keys.Verify(ctx, secret); err != nil || p.Partner != "fuelco" {
		t.Fatalf("verify: %+v %v", p, err)
	}
	if err := partners.NewKeys(pool).Revoke(ctx, id); err != nil {
		t.Fatal(err)
	}
	var version int64
	if err := pool.QueryRow(ctx, `SELECT terms_version FROM journal_head`).Scan(&version); err != nil {
		t.Fatal(err)
	}
	cache.Observe(version)
	if _, err := keys.Verify(ctx, secret); !errors.Is(err, partners.ErrUnknownKey) {
		t.Fatalf("a key revoked elsewhere still verifies once the cache saw the version: %v", err)
	}

	id, secret, err = keys.Create(ctx, partners.RoleOperator, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Verify(ctx, secret); err != nil {
		t.Fatal(err)
	}
	if err := keys.Revoke(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Verify(ctx, secret); !errors.Is(err, partners.ErrUnknownKey) {
		t.Fatalf("a key revoked by this process still verifies: %v", err)
	}
}
