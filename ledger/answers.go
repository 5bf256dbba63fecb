package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/coalitionledger/coalition/internal/pg"
)

// Lookup returns the stored first answer to an idempotency key, a conflict if the key
// was used for another request, or nil if the key is new. Callers use it to answer a
// replay without redoing work that happens before the engine (finding the member,
// pricing).
func (l *Ledger) Lookup(ctx context.Context, partner, key string, hash []byte) (*Result, error) {
	var sk storedKey
	err := l.pool.QueryRow(ctx, `SELECT request_hash, result FROM idempotency_keys WHERE partner_id = $1 AND key = $2`,
		partner, key).Scan(&sk.hash, &sk.result)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("idempotency key: %w", err)
	}
	r := replay(sk, hash, &Entry{Partner: partner, IdempotencyKey: key})
	return &r, nil
}

// Refuse records a refusal decided before the engine as the first answer to an
// idempotency key, so that a replay gets the same refusal. If the key already has an
// answer, that answer is returned instead (or a conflict, for another request).
func (l *Ledger) Refuse(ctx context.Context, partner, key string, hash []byte, refusal *Error) (Result, error) {
	out := Result{Err: refusal}
	err := pg.InTx(ctx, l.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockID("key", partner, key)); err != nil {
			return err
		}
		var sk storedKey
		err := tx.QueryRow(ctx, `SELECT request_hash, result FROM idempotency_keys WHERE partner_id = $1 AND key = $2`,
			partner, key).Scan(&sk.hash, &sk.result)
		if err == nil {
			out = replay(sk, hash, &Entry{Partner: partner, IdempotencyKey: key})
			return nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		raw, err := json.Marshal(Result{Err: refusal})
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO idempotency_keys (partner_id, key, request_hash, result, created_at) VALUES ($1, $2, $3, $4, $5)`,
			partner, key, hash, raw, l.clock().UTC())
		return err
	})
	if err != nil {
		return Result{}, fmt.Errorf("record refusal: %w", err)
	}
	return out, nil
}

// Answer is a stored first answer that is not a journal entry: an HTTP layer's reply to an
// operator request, say. It lives with the entries' idempotency records, under its own
// scope, so that one mechanism keeps every first answer.
type Answer struct {
	Status int    `json:"status"`
	Body   []byte `json:"body"` // as sent, byte for byte (base64 in the record)
}

// LookupAnswer returns the stored answer to a key in scope: found, or a conflict if the key
// was used for another request.
func (l *Ledger) LookupAnswer(ctx context.Context, scope, key string, hash []byte) (*Answer, error) {
	var sk storedKey
	err := l.pool.QueryRow(ctx, `SELECT request_hash, result FROM idempotency_keys WHERE partner_id = $1 AND key = $2`,
		scope, key).Scan(&sk.hash, &sk.result)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("idempotency key: %w", err)
	}
	return decodeAnswer(sk, hash, key)
}

func decodeAnswer(sk storedKey, hash []byte, key string) (*Answer, error) {
	if string(sk.hash) != string(hash) {
		return nil, Errorf(CodeIdempotencyConflict, "idempotency key %q was already used for a different request", key)
	}
	var a Answer
	if err := json.Unmarshal(sk.result, &a); err != nil || a.Status == 0 {
		return nil, Errorf(CodeIdempotencyConflict, "idempotency key %q was already used for another kind of request", key)
	}
	return &a, nil
}

// StoreAnswer keeps a as the first answer to a key in scope, unless the key already has
// one, which it returns instead (or a conflict, for another request).
func (l *Ledger) StoreAnswer(ctx context.Context, scope, key string, hash []byte, a Answer) (*Answer, error) {
	var out *Answer
	err := pg.InTx(ctx, l.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockID("key", scope, key)); err != nil {
			return err
		}
		var sk storedKey
		err := tx.QueryRow(ctx, `SELECT request_hash, result FROM idempotency_keys WHERE partner_id = $1 AND key = $2`,
			scope, key).Scan(&sk.hash, &sk.result)
		if err == nil {
			out, err = decodeAnswer(sk, hash, key)
			return err
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		raw, err := json.Marshal(a)
		if err != nil {
			return err
		}
		out = &a
		_, err = tx.Exec(ctx, `INSERT INTO idempotency_keys (partner_id, key, request_hash, result, created_at) VALUES ($1, $2, $3, $4, $5)`,
			scope, key, hash, raw, l.clock().UTC())
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
