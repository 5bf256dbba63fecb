package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/gowebpki/jcs"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/coalitionledger/coalition/internal/pg"
	"github.com/coalitionledger/coalition/ledger"
)

// Checkpoint is the journal's position and head hash at a moment, signed by the
// operator's key. Hash, PublicKey and Signature are hex.
type Checkpoint struct {
	ID        int64     `json:"id"`
	Position  int64     `json:"position"`
	Hash      string    `json:"hash"`
	SignedAt  time.Time `json:"signed_at"`
	Reason    string    `json:"reason"`
	PublicKey string    `json:"public_key"`
	Signature string    `json:"signature"`
}

// CheckpointRecord is a checkpoint as JSON: a line of a JSON-lines export (type
// "checkpoint") and, without type, the API's answer. signed_at is exactly as signed (UTC,
// six decimals), so that an auditor rebuilds the signed bytes from the JSON alone.
type CheckpointRecord struct {
	Type      string `json:"type,omitempty"`
	ID        int64  `json:"id"`
	Position  int64  `json:"position"`
	Hash      string `json:"hash"`
	SignedAt  string `json:"signed_at"`
	Reason    string `json:"reason"`
	PublicKey string `json:"public_key"`
	Signature string `json:"signature"`
}

// Record returns the checkpoint as JSON of the given type ("" for the API).
func (c Checkpoint) Record(typ string) CheckpointRecord {
	return CheckpointRecord{Type: typ, ID: c.ID, Position: c.Position, Hash: c.Hash, SignedAt: c.SignedAt.UTC().Format(ledger.TimeFormat),
		Reason: c.Reason, PublicKey: c.PublicKey, Signature: c.Signature}
}

// Checkpoint returns the checkpoint the record holds.
func (r CheckpointRecord) Checkpoint() (Checkpoint, error) {
	t, err := time.Parse(time.RFC3339Nano, r.SignedAt)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("checkpoint %d: signed_at: %w", r.ID, err)
	}
	return Checkpoint{ID: r.ID, Position: r.Position, Hash: r.Hash, SignedAt: t.UTC(), Reason: r.Reason, PublicKey: r.PublicKey, Signature: r.Signature}, nil
}

// MarshalJSON writes the checkpoint as its CheckpointRecord.
func (c Checkpoint) MarshalJSON() ([]byte, error) { return json.Marshal(c.Record("")) }

// UnmarshalJSON reads what MarshalJSON writes.
func (c *Checkpoint) UnmarshalJSON(raw []byte) error {
	var r CheckpointRecord
	if err := json.Unmarshal(raw, &r); err != nil {
		return err
	}
	cp, err := r.Checkpoint()
	if err != nil {
		return err
	}
	*c = cp
	return nil
}

// checkpointPayload is what a checkpoint's signature covers, as RFC 8785 JSON.
type checkpointPayload struct {
	Type     string `json:"type"`
	Position int64  `json:"position"`
	Hash     string `json:"hash"`
	SignedAt string `json:"signed_at"`
	Reason   string `json:"reason"`
}

// checkpointType names the signed statement, so that a signature made for something else
// never passes for a checkpoint.
const checkpointType = "coalition.checkpoint.v1"

// MaxReasonLength bounds a checkpoint's reason.
const MaxReasonLength = 200

// SignedBytes returns the bytes the checkpoint's signature covers: the RFC 8785 JSON of
// {"type": "coalition.checkpoint.v1", "position", "hash" (hex), "signed_at" (UTC, µs),
// "reason"}.
func (c *Checkpoint) SignedBytes() ([]byte, error) {
	raw, err := json.Marshal(checkpointPayload{Type: checkpointType, Position: c.Position, Hash: c.Hash,
		SignedAt: c.SignedAt.UTC().Format(ledger.TimeFormat), Reason: c.Reason})
	if err != nil {
		return nil, err
	}
	return jcs.Transform(raw)
}

// Verify checks the checkpoint's signature with trusted, the operator's published key; with
// trusted nil it uses the key the checkpoint names (which proves only that the checkpoint
// is intact, not who signed it).
func (c *Checkpoint) Verify(trusted ed25519.PublicKey) error {
	pub, err := hex.DecodeString(c.PublicKey)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return errors.New("its public key is not 32 bytes of hex")
	}
	if trusted != nil && !bytes.Equal(pub, trusted) {
		return fmt.Errorf("it is signed by key %x, not by the trusted key %x", pub, []byte(trusted))
	}
	sig, err := hex.DecodeString(c.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return errors.New("its signature is not 64 bytes of hex")
	}
	msg, err := c.SignedBytes()
	if err != nil {
		return err
	}
	if !ed25519.Verify(pub, msg, sig) {
		return errors.New("its signature does not match its position, hash, time and reason")
	}
	return nil
}

// Checkpointer signs checkpoints of the journal with the operator's key.
type Checkpointer struct {
	pool *pgxpool.Pool
	key  ed25519.PrivateKey
	now  func() time.Time
}

// NewCheckpointer returns a checkpointer over pool that signs with key; now is the clock
// of signed_at (nil: time.Now).
func NewCheckpointer(pool *pgxpool.Pool, key ed25519.PrivateKey, now func() time.Time) *Checkpointer {
	if now == nil {
		now = time.Now
	}
	return &Checkpointer{pool: pool, key: key, now: now}
}

// PublicKey returns the public key that verifies this checkpointer's signatures.
func (c *Checkpointer) PublicKey() ed25519.PublicKey {
	if c == nil || len(c.key) != ed25519.PrivateKeySize {
		return nil
	}
	return c.key.Public().(ed25519.PublicKey)
}

// ErrNoKey is returned by a nil Checkpointer, or one without a key: the process was
// started without the checkpoint signing key.
var ErrNoKey = errors.New("checkpoint: no signing key (see docs/AUDIT.md, \"The checkpoint key\")")

// Checkpoint signs the journal's head as committed now (its position and hash) with the
// reason ("settlement 2026-11-22", "on demand") and stores the checkpoint, in its own
// transaction. Settlement calls it after each run has committed.
func (c *Checkpointer) Checkpoint(ctx context.Context, reason string) (*Checkpoint, error) {
	if c == nil || len(c.key) != ed25519.PrivateKeySize {
		return nil, ErrNoKey
	}
	var cp *Checkpoint
	err := pg.InTx(ctx, c.pool, func(tx pgx.Tx) error {
		var err error
		cp, err = c.CheckpointTx(ctx, tx, reason)
		return err
	})
	return cp, err
}

// CheckpointTx is Checkpoint inside the caller's transaction: it signs the head that tx
// sees (its own entries included) and stores the checkpoint in tx.
func (c *Checkpointer) CheckpointTx(ctx context.Context, tx pgx.Tx, reason string) (*Checkpoint, error) {
	if c == nil || len(c.key) != ed25519.PrivateKeySize {
		return nil, ErrNoKey
	}
	if reason == "" || len(reason) > MaxReasonLength {
		return nil, ledger.Errorf(ledger.CodeInvalid, "a checkpoint's reason must be 1 to %d bytes", MaxReasonLength)
	}
	var pos int64
	var hash []byte
	if err := tx.QueryRow(ctx, `SELECT position, hash FROM journal_head`).Scan(&pos, &hash); err != nil {
		return nil, fmt.Errorf("checkpoint: journal head: %w", err)
	}
	cp := &Checkpoint{Position: pos, Hash: hex.EncodeToString(hash), SignedAt: c.now().UTC().Truncate(time.Microsecond),
		Reason: reason, PublicKey: hex.EncodeToString(c.PublicKey())}
	msg, err := cp.SignedBytes()
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	sig := ed25519.Sign(c.key, msg)
	cp.Signature = hex.EncodeToString(sig)
	err = tx.QueryRow(ctx, `INSERT INTO checkpoints (position, hash, signed_at, reason, public_key, signature)
		VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`, pos, hash, cp.SignedAt, reason, []byte(c.PublicKey()), sig).Scan(&cp.ID)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: store: %w", err)
	}
	return cp, nil
}

// MaxCheckpoints bounds one read of the checkpoints.
const MaxCheckpoints = 10000

// AllCheckpoints returns every checkpoint in id order, reading them page by page.
func AllCheckpoints(ctx context.Context, q Querier) ([]Checkpoint, error) {
	var all []Checkpoint
	for after := int64(0); ; {
		page, err := Checkpoints(ctx, q, after, MaxCheckpoints)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if len(page) < MaxCheckpoints {
			return all, nil
		}
		after = page[len(page)-1].ID
	}
}

// Checkpoints returns up to limit checkpoints with an id after after, in id order (the
// order they were signed in; verify sorts them by position).
func Checkpoints(ctx context.Context, q Querier, after int64, limit int) ([]Checkpoint, error) {
	if limit <= 0 || limit > MaxCheckpoints {
		limit = MaxCheckpoints
	}
	rows, err := q.Query(ctx, `SELECT id, position, hash, signed_at, reason, public_key, signature
		FROM checkpoints WHERE id > $1 ORDER BY id LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("checkpoints: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Checkpoint, error) {
		var cp Checkpoint
		var hash, pub, sig []byte
		err := r.Scan(&cp.ID, &cp.Position, &hash, &cp.SignedAt, &cp.Reason, &pub, &sig)
		cp.Hash, cp.PublicKey, cp.Signature = hex.EncodeToString(hash), hex.EncodeToString(pub), hex.EncodeToString(sig)
		cp.SignedAt = cp.SignedAt.UTC()
		return cp, err
	})
	if err != nil {
		return nil, fmt.Errorf("checkpoints: %w", err)
	}
	if out == nil {
		out = []Checkpoint{}
	}
	return out, nil
}
