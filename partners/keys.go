package partners

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/oklog/ulid/v2"

	"github.com/coalitionledger/coalition/audit"
	"github.com/coalitionledger/coalition/internal/pg"
	"github.com/coalitionledger/coalition/ledger"
)

// Role is what an API key may do.
type Role string

// The roles of DESIGN: a partner key acts for one partner, the operator does everything
// but rewrite history, an auditor only reads.
const (
	RolePartner  Role = "partner"
	RoleOperator Role = "operator"
	RoleAuditor  Role = "auditor"
)

// Principal is who a request acts as: a key's role and, for a partner key, its partner.
type Principal struct {
	KeyID   string
	Role    Role
	Partner string
}

// ErrUnknownKey is returned for a secret that matches no live key.
var ErrUnknownKey = errors.New("unknown or revoked API key")

// Keys stores API keys, hashed.
type Keys struct {
	pool  *pgxpool.Pool
	cache *Cache // nil: every Verify reads the database
}

// NewKeys returns the key store over pool.
func NewKeys(pool *pgxpool.Pool) *Keys { return &Keys{pool: pool} }

func hashSecret(secret string) []byte {
	sum := sha256.Sum256([]byte(secret))
	return sum[:]
}

// Create makes a key with the role (and partner, for a partner key) and returns its id and
// its secret, which is shown once and stored only as a hash.
func (k *Keys) Create(ctx context.Context, role Role, partner string) (id, secret string, err error) {
	switch role {
	case RolePartner:
		if partner == "" {
			return "", "", ledger.Errorf(ledger.CodeInvalid, "a partner key needs its partner").With("field", "partner")
		}
	case RoleOperator, RoleAuditor:
		if partner != "" {
			return "", "", ledger.Errorf(ledger.CodeInvalid, "an %s key is not bound to a partner", role).With("field", "partner")
		}
	default:
		return "", "", ledger.Errorf(ledger.CodeInvalid, "role %q is not one of partner, operator, auditor", role).With("field", "role")
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", "", fmt.Errorf("key secret: %w", err)
	}
	id = ulid.Make().String()
	secret = "cl_" + string(role[0]) + "_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(raw))
	var p *string
	if partner != "" {
		p = &partner
	}
	err = change(ctx, k.pool, k.cache, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO api_keys (id, secret_hash, role, partner_id) VALUES ($1, $2, $3, $4)`,
			id, hashSecret(secret), string(role), p); err != nil {
			return err
		}
		// Never the secret: who may read the log must not be able to act with it.
		return audit.RecordAs(ctx, tx, audit.ActionKeyCreated, map[string]string{"id": id, "role": string(role), "partner": partner})
	})
	if err != nil {
		if strings.Contains(err.Error(), "api_keys_partner_id_fkey") {
			return "", "", ledger.Errorf(ledger.CodeNotFound, "partner %s does not exist", partner)
		}
		return "", "", fmt.Errorf("create key: %w", err)
	}
	return id, secret, nil
}

// Verify returns the principal of a live key's secret, or ErrUnknownKey: through the
// cache, if any (a live key is kept, an unknown one never).
func (k *Keys) Verify(ctx context.Context, secret string) (Principal, error) {
	if k.cache == nil {
		p, _, err := k.read(ctx, secret)
		return p, err
	}
	return lookup(k.cache, k.cache.keys, sha256.Sum256([]byte(secret)), func() (Principal, int64, error) {
		return k.read(ctx, secret)
	})
}

// read reads the principal of a live key's secret and the terms version, in one round
// trip.
func (k *Keys) read(ctx context.Context, secret string) (Principal, int64, error) {
	var p Principal
	var version int64
	var partner *string
	found := false
	b := &pgx.Batch{}
	b.Queue(`SELECT terms_version FROM journal_head`).QueryRow(func(r pgx.Row) error { return r.Scan(&version) })
	b.Queue(`SELECT id, role, partner_id FROM api_keys WHERE secret_hash = $1 AND revoked_at IS NULL`, hashSecret(secret)).
		Query(func(rows pgx.Rows) error {
			for rows.Next() {
				found = true
				if err := rows.Scan(&p.KeyID, &p.Role, &partner); err != nil {
					return err
				}
			}
			return rows.Err()
		})
	if err := pg.SendBatch(ctx, k.pool, b); err != nil {
		return Principal{}, 0, fmt.Errorf("verify key: %w", err)
	}
	if !found {
		return Principal{}, 0, ErrUnknownKey
	}
	if partner != nil {
		p.Partner = *partner
	}
	return p, version, nil
}

// Revoke revokes a key; a revoked key is refused from then on.
func (k *Keys) Revoke(ctx context.Context, id string) error {
	return change(ctx, k.pool, k.cache, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL`, id)
		if err != nil {
			return fmt.Errorf("revoke key %s: %w", id, err)
		}
		if tag.RowsAffected() == 0 {
			var at time.Time
			if err := tx.QueryRow(ctx, `SELECT revoked_at FROM api_keys WHERE id = $1`, id).Scan(&at); err == nil {
				return ledger.Errorf(ledger.CodeNotFound, "key %s was revoked already, at %s", id, at.UTC().Format(time.RFC3339))
			}
			return ledger.Errorf(ledger.CodeNotFound, "key %s does not exist", id)
		}
		return audit.RecordAs(ctx, tx, audit.ActionKeyRevoked, map[string]string{"id": id})
	})
}

// APIKey is what is known of a key besides its secret, which nobody can read back.
type APIKey struct {
	ID        string     `json:"id"`
	Role      Role       `json:"role"`
	Partner   *string    `json:"partner"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at"`
}

// List returns every key, revoked ones included, oldest first: so that an operator can
// find the id of a key to revoke.
func (k *Keys) List(ctx context.Context) ([]APIKey, error) {
	rows, err := k.pool.Query(ctx, `SELECT id, role, partner_id, created_at, revoked_at FROM api_keys ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (APIKey, error) {
		var ki APIKey
		err := r.Scan(&ki.ID, &ki.Role, &ki.Partner, &ki.CreatedAt, &ki.RevokedAt)
		ki.CreatedAt = ki.CreatedAt.UTC()
		if ki.RevokedAt != nil {
			t := ki.RevokedAt.UTC()
			ki.RevokedAt = &t
		}
		return ki, err
	})
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	return list, nil
}
