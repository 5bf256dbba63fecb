package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/coalitionledger/coalition/internal/pg"
	"github.com/coalitionledger/coalition/internal/pgtest"
	"github.com/coalitionledger/coalition/ledger"
	"github.com/coalitionledger/coalition/partners"
)

// Whatever body a till sends to a partner write, the answer is never a 500 and every
// error is DESIGN's error body.
func FuzzPartnerWriteBodies(f *testing.F) {
	ctx := context.Background()
	pool, err := pg.Connect(ctx, pgtest.URL(f), 4)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(pool.Close)
	store, keys := partners.NewStore(pool), partners.NewKeys(pool)
	if _, err := store.CreatePartner(ctx, "shop", "Shop"); err != nil {
		f.Fatal(err)
	}
	now := time.Now()
	if _, err := store.AddContract(ctx, "shop", partners.Contract{EffectiveFrom: now, Currency: "USD",
		Earn: partners.EarnRate{PointsPerUnit: decPtr("1")}}, now); err != nil {
		f.Fatal(err)
	}
	_, secret, err := keys.Create(ctx, partners.RolePartner, "shop")
	if err != nil {
		f.Fatal(err)
	}
	srv := httptest.NewServer(New(Config{Store: store, Keys: keys, Ledger: ledger.New(pool)}).Handler())
	f.Cleanup(srv.Close)
	paths := []string{"/earns", "/redemptions", "/holds", "/reversals", "/batch", "/holds/01HOLD/capture"}
	for _, seed := range []string{
		`{"member":{"card":"1"},"amount":"10.00","currency":"USD"}`,
		`{"member":{"phone":"+15550100"},"points":"5"}`,
		`{"member":{"card":"1"},"value":"1.5","purchase_amount":"3"}`,
		`{"entry":"01X","amount":"1"}`,
		`{"items":[{"type":"earn","idempotency_key":"a","body":{"member":{"card":"2"},"amount":"1","currency":"USD"}}]}`,
		`{"member":{"card":"1"},"amount":"1e309","currency":"USD"}`,
		`{"member":{"id":"` + string(bytes.Repeat([]byte("x"), 300)) + `"},"amount":"1","currency":"USD"}`,
		`{"member":null,"lines":[{"category":"","amount":"-0"}],"currency":"USD"}`,
		`[]`, `null`, `{`, `{"member":{"card":"1"},"amount":"10.00","currency":"USD"} {}`,
	} {
		for i := range paths {
			f.Add(uint8(i), []byte(seed))
		}
	}
	n := 0
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		n++
		path := "/v1/partners/shop" + paths[int(which)%len(paths)]
		req, _ := http.NewRequest(http.MethodPost, srv.URL+path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+secret)
		req.Header.Set("Idempotency-Key", "fuzz-"+itoa(n)+"-"+time.Now().Format("150405.000000000"))
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		raw, _ := io.ReadAll(res.Body)
		if res.StatusCode >= 500 {
			t.Fatalf("%s answered %d to %q: %s", path, res.StatusCode, body, raw)
		}
		if res.StatusCode >= 400 {
			var e struct {
				Error struct {
					Code    string         `json:"code"`
					Message string         `json:"message"`
					Details map[string]any `json:"details"`
				} `json:"error"`
			}
			if json.Unmarshal(raw, &e) != nil || e.Error.Code == "" || e.Error.Message == "" {
				t.Fatalf("%s answered %d without an error body: %s", path, res.StatusCode, raw)
			}
		}
	})
}
