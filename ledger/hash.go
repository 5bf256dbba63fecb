package ledger

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/gowebpki/jcs"
	"github.com/shopspring/decimal"
)

// TimeFormat is how times appear in the hashed form: UTC at microseconds.
const TimeFormat = "2006-01-02T15:04:05.000000Z"

// The hashed form's structs list their fields in RFC 8785's key order (sorted by UTF-16
// code units), so that encoding/json writes them as canonical JSON (see canonicalJSON).

type canonicalPosting struct {
	Account string `json:"account"`
	Amount  string `json:"amount"`
	Unit    string `json:"unit"`
}

type canonicalMovement struct {
	Consumer  string `json:"consumer"`
	ExpiresAt string `json:"expires_at"`
	Issuer    string `json:"issuer"`
	Lot       string `json:"lot"`
	Points    string `json:"points"`
	Rate      string `json:"rate"`
	Reason    string `json:"reason"`
}

type canonicalEntry struct {
	BusinessTime string              `json:"business_time"`
	ID           string              `json:"id"`
	Kind         EntryKind           `json:"kind"`
	Movements    []canonicalMovement `json:"lot_movements"`
	Member       string              `json:"member"`
	Metadata     json.RawMessage     `json:"metadata"`
	Partner      string              `json:"partner"`
	Position     int64               `json:"position"`
	Postings     []canonicalPosting  `json:"postings"`
	PrevHash     string              `json:"prev_hash"`
	RecordedAt   string              `json:"recorded_at"`
	Reference    string              `json:"reference"`
	Reverses     string              `json:"reverses"`
}

// CanonicalJSON returns the hashed form of an entry: RFC 8785 JSON with amounts at their
// unit's scale, times in UTC at microseconds, postings and lot movements (with the rate of
// each consumption and the expiry of each new lot) in the order the journal holds them, the
// member by id only, and the previous entry's hash in hex.
func CanonicalJSON(e *Posted, u Units) ([]byte, error) {
	meta := e.Metadata
	if len(meta) == 0 {
		meta = json.RawMessage(`{}`)
	}
	meta, err := jcs.Transform(meta)
	if err != nil {
		return nil, fmt.Errorf("canonical form of entry %d: metadata: %w", e.Position, err)
	}
	return canonicalJSON(e, u, meta)
}

// canonicalJSON is CanonicalJSON for metadata already in canonical form (as the engine
// writes it): it encodes without parsing the result again, which the writer does for
// every entry while it holds the journal head.
func canonicalJSON(e *Posted, u Units, meta json.RawMessage) ([]byte, error) {
	c := canonicalEntry{
		Position: e.Position, ID: e.ID, Kind: e.Kind, Partner: e.Partner, Member: e.Member,
		Reference: e.Reference, BusinessTime: formatTime(e.BusinessTime), RecordedAt: formatTime(e.RecordedAt),
		Metadata: meta, Reverses: e.Reverses, PrevHash: hex.EncodeToString(e.PrevHash),
		Postings: make([]canonicalPosting, len(e.Postings)), Movements: make([]canonicalMovement, len(e.Movements)),
	}
	for i, p := range e.Postings {
		scale, err := u.Scale(p.Unit)
		if err != nil {
			return nil, err
		}
		c.Postings[i] = canonicalPosting{Account: p.Account, Unit: p.Unit, Amount: AtScale(p.Amount, scale)}
	}
	for i, m := range e.Movements {
		c.Movements[i] = canonicalMovement{Lot: m.Lot, Issuer: m.Issuer, Points: AtScale(m.Points, u.PointsScale),
			Consumer: m.Consumer, Reason: m.Reason, Rate: m.Rate.String()}
		if m.ExpiresAt != nil {
			c.Movements[i].ExpiresAt = formatTime(*m.ExpiresAt)
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("canonical form of entry %d: %w", e.Position, err)
	}
	raw := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	// With its keys in order and no HTML escaping, encoding/json writes RFC 8785 but for
	// \u escapes: it writes U+2028, U+2029 and invalid UTF-8 so where RFC 8785 does not.
	// Those (rare) entries go through the full transform.
	if bytes.Contains(raw, []byte(`\u`)) {
		return jcs.Transform(raw)
	}
	return raw, nil
}

// EntryHash returns SHA-256 of the entry's canonical form, which includes the previous
// hash: the link of the chain.
func EntryHash(e *Posted, u Units) ([]byte, error) {
	raw, err := CanonicalJSON(e, u)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(raw)
	return sum[:], nil
}

// entryHash is EntryHash for metadata already in canonical form.
func entryHash(e *Posted, u Units) ([]byte, error) {
	raw, err := canonicalJSON(e, u, e.Metadata)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(raw)
	return sum[:], nil
}

// AtScale writes an amount with its unit's scale of decimals ("100.00"), or with all of
// its own when it has more: the engine never writes such an amount, so one found in the
// journal was changed behind its back, and writing it whole (never rounded) makes the
// hash, and every export, show it.
func AtScale(d decimal.Decimal, scale int32) string {
	if !d.Equal(d.Truncate(scale)) {
		return d.String()
	}
	return d.StringFixed(scale)
}

func formatTime(t time.Time) string { return t.UTC().Truncate(time.Microsecond).Format(TimeFormat) }

// GenesisHash is the previous hash of the first entry: 32 zero bytes.
var GenesisHash = make([]byte, sha256.Size)
