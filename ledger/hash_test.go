package ledger

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/gowebpki/jcs"
	"github.com/shopspring/decimal"
	"pgregory.net/rapid"
)

// referenceCanonical is the hashed form as RFC 8785 defines it, the slow way: the entry as
// a JSON object (keys in any order, HTML escaped), then the full transform. Every hash
// the journal already holds was made so.
func referenceCanonical(t *rapid.T, e *Posted, u Units) []byte {
	postings := []map[string]string{}
	for _, p := range e.Postings {
		scale, err := u.Scale(p.Unit)
		if err != nil {
			t.Fatal(err)
		}
		postings = append(postings, map[string]string{"account": p.Account, "unit": p.Unit, "amount": AtScale(p.Amount, scale)})
	}
	movements := []map[string]string{}
	for _, m := range e.Movements {
		mv := map[string]string{"lot": m.Lot, "issuer": m.Issuer, "points": AtScale(m.Points, u.PointsScale),
			"consumer": m.Consumer, "reason": m.Reason, "rate": m.Rate.String(), "expires_at": ""}
		if m.ExpiresAt != nil {
			mv["expires_at"] = formatTime(*m.ExpiresAt)
		}
		movements = append(movements, mv)
	}
	meta := e.Metadata
	if len(meta) == 0 {
		meta = json.RawMessage(`{}`)
	}
	raw, err := json.Marshal(map[string]any{
		"position": e.Position, "id": e.ID, "kind": e.Kind, "partner": e.Partner, "member": e.Member,
		"reference": e.Reference, "business_time": formatTime(e.BusinessTime), "recorded_at": formatTime(e.RecordedAt),
		"metadata": meta, "reverses": e.Reverses, "postings": postings, "lot_movements": movements,
		"prev_hash": hexOf(e.PrevHash),
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := jcs.Transform(raw)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func hexOf(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

// The hashed form written without re-parsing (canonicalJSON, as the writer hashes) is byte
// for byte RFC 8785, whatever the text: HTML characters, non-ASCII, control characters,
// U+2028 and U+2029, backslashes, quotes.
func TestCanonicalJSONIsRFC8785(t *testing.T) {
	u, err := NewUnits("USD", 2)
	if err != nil {
		t.Fatal(err)
	}
	text := rapid.OneOf(
		rapid.StringMatching(`[a-z0-9:_-]{0,12}`),
		rapid.SampledFrom([]string{"", "<b>&amp;</b>", "Кофе «Ёж»", "\u2028\u2029", "a\\ub", `"q"`, "\x01\b\f\n\r\t\x1f", "💳", "\x7f"}),
		rapid.String(),
	)
	amount := rapid.Custom(func(t *rapid.T) decimal.Decimal {
		return decimal.New(rapid.Int64Range(-1e9, 1e9).Draw(t, "units"), -rapid.Int32Range(0, 2).Draw(t, "exp"))
	})
	rapid.Check(t, func(t *rapid.T) {
		when := time.Unix(rapid.Int64Range(0, 4e9).Draw(t, "s"), rapid.Int64Range(0, 1e9).Draw(t, "ns")).UTC()
		metaObj := map[string]any{text.Draw(t, "mk"): text.Draw(t, "mv"), "n": rapid.Float64().Draw(t, "f"), "z": []any{1, "x", nil, true}}
		rawMeta, err := json.Marshal(metaObj)
		if err != nil {
			t.Skip("metadata does not encode")
		}
		e := &Posted{
			Position: rapid.Int64Range(1, 1<<52).Draw(t, "pos"), ID: text.Draw(t, "id"), Kind: EntryKind(text.Draw(t, "kind")),
			Partner: text.Draw(t, "partner"), Member: text.Draw(t, "member"), Reference: text.Draw(t, "ref"),
			BusinessTime: when, RecordedAt: when.Add(time.Second), Metadata: rawMeta, Reverses: text.Draw(t, "rev"),
			PrevHash: []byte(rapid.String().Draw(t, "prev")),
		}
		for i := rapid.IntRange(0, 3).Draw(t, "np"); i > 0; i-- {
			e.Postings = append(e.Postings, Posting{Account: text.Draw(t, "acct"), Unit: rapid.SampledFrom([]string{"USD", Points}).Draw(t, "unit"), Amount: amount.Draw(t, "amt")})
		}
		for i := rapid.IntRange(0, 2).Draw(t, "nm"); i > 0; i-- {
			m := Movement{Lot: text.Draw(t, "lot"), Issuer: text.Draw(t, "iss"), Points: amount.Draw(t, "pts"),
				Consumer: text.Draw(t, "cons"), Reason: text.Draw(t, "why"), Rate: amount.Draw(t, "rate")}
			if rapid.Bool().Draw(t, "exp?") {
				m.ExpiresAt = &when
			}
			e.Movements = append(e.Movements, m)
		}
		want := referenceCanonical(t, e, u)
		got, err := CanonicalJSON(e, u)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("canonical form differs:\n got %s\nwant %s", got, want)
		}
		// The writer's path: metadata already canonical, as plan leaves it.
		meta, perr := canonicalMetadata(rawMeta)
		if perr != nil {
			return // refused metadata (a NUL) never reaches the hash
		}
		fast, err := canonicalJSON(e, u, meta)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(fast, want) {
			t.Fatalf("writer's canonical form differs:\n got %s\nwant %s", fast, want)
		}
	})
}
