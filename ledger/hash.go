package ledger

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"github.com/shopspring/decimal"
	"time"

	"github.com/gowebpki/jcs"
)

// TimeFormat is how times appear in the hashed form: UTC at microseconds.
const TimeFormat = "2006-01-02T15:04:05.000000Z"

type canonicalPosting struct {
	Account string `json:"account"`
	Unit    string `json:"unit"`
	Amount  string `json:"amount"`
}

type canonicalMovement struct {
	Lot       string `json:"lot"`
	Issuer    string `json:"issuer"`
	Points    string `json:"points"`
	Consumer  string `json:"consumer"`
	Reason    string `json:"reason"`
	Rate      string `json:"rate"`
	ExpiresAt string `json:"expires_at"`
}

type canonicalEntry struct {
	Position     int64               `json:"position"`
	ID           string              `json:"id"`
	Kind         EntryKind           `json:"kind"`
	Partner      string              `json:"partner"`
	Member       string              `json:"member"`
	Reference    string              `json:"reference"`
	BusinessTime string              `json:"business_time"`
	RecordedAt   string              `json:"recorded_at"`
	Metadata     json.RawMessage     `json:"metadata"`
	Reverses     string              `json:"reverses"`
	Postings     []canonicalPosting  `json:"postings"`
	Movements    []canonicalMovement `json:"lot_movements"`
	PrevHash     string              `json:"prev_hash"`
}

// CanonicalJSON returns the hashed form of an entry: RFC 8785 JSON with amounts at their
// unit's scale, times in UTC at microseconds, postings and lot movements (with the rate of
// each consumption and the expiry of each new lot) in the order the journal holds them, the
// member by id only, and the previous entry's hash in hex.
func CanonicalJSON(e *Posted, u Units) ([]byte, error) {
	c := canonicalEntry{
		Position: e.Position, ID: e.ID, Kind: e.Kind, Partner: e.Partner, Member: e.Member,
		Reference: e.Reference, BusinessTime: formatTime(e.BusinessTime), RecordedAt: formatTime(e.RecordedAt),
		Metadata: e.Metadata, Reverses: e.Reverses, PrevHash: hex.EncodeToString(e.PrevHash),
		Postings: make([]canonicalPosting, len(e.Postings)), Movements: make([]canonicalMovement, len(e.Movements)),
	}
	if len(c.Metadata) == 0 {
		c.Metadata = json.RawMessage(`{}`)
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
	raw, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("canonical form of entry %d: %w", e.Position, err)
	}
	return jcs.Transform(raw)
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
