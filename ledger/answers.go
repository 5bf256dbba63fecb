package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/coalitionledger/coalition/internal/pg"
)

// readKey returns the idempotency record of a key in scope, or nil if the key is new.
func readKey(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, scope, key string) (*storedKey, error) {
	var sk storedKey
	err := q.QueryRow(ctx, `SELECT request_hash, result FROM idempotency_keys WHERE partner_id = $1 AND key = $2`,
		scope, key).Scan(&sk.hash, &sk.result)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("idempotency key: %w", err)
	}
	return &sk, nil
}

// keepFirst stores result as the first answer to a key in scope, under the key's advisory
// lock, unless the key already has an answer: then it stores nothing and returns that one.
func (l *Ledger) keepFirst(ctx context.Context, scope, key string, hash []byte, result any, termsVersion int64) (*storedKey, error) {
	var existing *storedKey
	err := pg.InTx(ctx, l.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockID("key", scope, key)); err != nil {
			return err
		}
		var err error
		if existing, err = readKey(ctx, tx, scope, key); err != nil || existing != nil {
			return err
		}
		if termsVersion != 0 {
			// The terms lock, shared, held until commit (migration 00008): a change of the
			// terms being committed is waited for (and then seen), and one that starts
			// later waits for this answer, so the answer never commits after a change it
			// did not see. (Not the head's row: the writer's batches lock that.)
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock_shared(hashtext('coalition terms'), 0)`); err != nil {
				return err
			}
			var now int64
			if err := tx.QueryRow(ctx, `SELECT terms_version FROM journal_head`).Scan(&now); err != nil {
				return err
			}
			if observe := l.onTerms.Load(); observe != nil {
				(*observe)(now)
			}
			if now != termsVersion {
				return ErrTermsChanged
			}
		}
		raw, err := json.Marshal(result)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO idempotency_keys (partner_id, key, request_hash, result, created_at) VALUES ($1, $2, $3, $4, $5)`,
			scope, key, hash, raw, l.clock().UTC())
		return err
	})
	if errors.Is(err, ErrTermsChanged) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("store first answer: %w", err)
	}
	return existing, nil
}

// Lookup returns the stored first answer to an idempotency key, a conflict if the key
// was used for another request, or nil if the key is new. Callers use it to answer a
// replay without redoing work that happens before the engine (finding the member,
// pricing).
func (l *Ledger) Lookup(ctx context.Context, partner, key string, hash []byte) (*Result, error) {
	sk, err := readKey(ctx, l.pool, partner, key)
	if err != nil || sk == nil {
		return nil, err
	}
	r := replay(*sk, hash, &Entry{Partner: partner, IdempotencyKey: key})
	return &r, nil
}

// LookupMany is Lookup for many keys of one partner in one round trip: the i-th answer
// is nil when keys[i] is new.
func (l *Ledger) LookupMany(ctx context.Context, partner string, keys []string, hashes [][]byte) ([]*Result, error) {
	out := make([]*Result, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	rows, err := l.pool.Query(ctx, `SELECT key, request_hash, result FROM idempotency_keys WHERE partner_id = $1 AND key = ANY($2)`,
		partner, keys)
	if err != nil {
		return nil, fmt.Errorf("idempotency keys: %w", err)
	}
	stored := map[string]storedKey{}
	var k string
	var sk storedKey
	_, err = pgx.ForEachRow(rows, []any{&k, &sk.hash, &sk.result}, func() error {
		stored[k] = storedKey{hash: append([]byte(nil), sk.hash...), result: append([]byte(nil), sk.result...)}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("idempotency keys: %w", err)
	}
	for i, key := range keys {
		if sk, ok := stored[key]; ok {
			r := replay(sk, hashes[i], &Entry{Partner: partner, IdempotencyKey: key})
			out[i] = &r
		}
	}
	return out, nil
}

// Refuse records a refusal decided before the engine as the first answer to an
// idempotency key, so that a replay gets the same refusal. If the key already has an
// answer, that answer is returned instead (or a conflict, for another request).
// termsVersion is the terms version the refusal was decided at (0: it depends on no
// terms): if the journal's has moved since, nothing is stored and the error is
// ErrTermsChanged, for the request to be decided again on fresh terms.
func (l *Ledger) Refuse(ctx context.Context, partner, key string, hash []byte, refusal *Error, termsVersion int64) (Result, error) {
	existing, err := l.keepFirst(ctx, partner, key, hash, Result{Err: refusal}, termsVersion)
	if err != nil {
		return Result{}, err
	}
	if existing != nil {
		return replay(*existing, hash, &Entry{Partner: partner, IdempotencyKey: key}), nil
	}
	return Result{Err: refusal}, nil
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
	sk, err := readKey(ctx, l.pool, scope, key)
	if err != nil || sk == nil {
		return nil, err
	}
	return decodeAnswer(*sk, hash, key)
}

func decodeAnswer(sk storedKey, hash []byte, key string) (*Answer, error) {
	if string(sk.hash) != string(hash) {
		return nil, keyConflict(key, "a different request")
	}
	var a Answer
	if err := json.Unmarshal(sk.result, &a); err != nil || a.Status == 0 {
		return nil, keyConflict(key, "another kind of request")
	}
	return &a, nil
}

// StoreAnswer keeps a as the first answer to a key in scope, unless the key already has
// one, which it returns instead (or a conflict, for another request).
func (l *Ledger) StoreAnswer(ctx context.Context, scope, key string, hash []byte, a Answer) (*Answer, error) {
	existing, err := l.keepFirst(ctx, scope, key, hash, a, 0)
	if err != nil {
		return nil, err
	}
	if existing != nil {
		return decodeAnswer(*existing, hash, key)
	}
	return &a, nil
}

// keyConflict is the answer to a key reused for another request than its first (what
// describes that one): a 409 that names the key and says how to go on.
func keyConflict(key, what string) *Error {
	return Errorf(CodeIdempotencyConflict, "idempotency key %q was already used for %s: send this request with a new key (the first request, retried as it was, gets its own answer)", key, what).
		With("idempotency_key", key)
}
