package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Execer runs a statement: a pgx.Tx, a *pgxpool.Pool or a *pgx.Conn.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Querier reads rows: a pgx.Tx, a *pgxpool.Pool or a *pgx.Conn.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// The actions the audit log records. Callers may record others that match actionPattern.
const (
	ActionPartnerCreated       = "partner.created"                  // a partner is added
	ActionPartnerStatusChanged = "partner.status_changed"           // a partner is suspended or reactivated
	ActionContractAdded        = "contract.added"                   // a contract version is added
	ActionKeyCreated           = "key.created"                      // an API key is made (never its secret)
	ActionKeyRevoked           = "key.revoked"                      // an API key is revoked
	ActionCoalitionChanged     = "coalition.changed"                // the coalition's settings are replaced
	ActionCheckpointSigned     = "checkpoint.signed"                // a checkpoint is signed on demand
	ActionSettlementRun        = "settlement.run"                   // a settlement run commits (recorded by settlement)
	ActionInstructionConfirmed = "settlement.instruction_confirmed" // a payment instruction is confirmed (recorded by settlement)
)

// Limits of one audit record.
const (
	MaxActorLength   = 200      // bytes of an actor
	MaxDetailsBytes  = 16 << 10 // bytes of an event's details as JSON
	MaxAuditLogPage  = 1000     // events in one read of the log
	defaultAuditPage = 100
)

var actionPattern = regexp.MustCompile(`^[a-z][a-z_.]{0,62}$`)

// Event is one operator action as the audit log holds it.
type Event struct {
	ID      int64           `json:"id"`
	At      time.Time       `json:"at"`
	Actor   string          `json:"actor"`
	Action  string          `json:"action"`
	Details json.RawMessage `json:"details"`
}

type actorKey struct{}

// WithActor returns ctx carrying who acts, so that the domain stores record each change
// in the audit log with its actor, in the change's own transaction.
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey{}, actor)
}

// ActorOf returns the actor ctx carries, or "system" for a change no key or person asked
// for (the demo's set-up, a test).
func ActorOf(ctx context.Context) string {
	if a, ok := ctx.Value(actorKey{}).(string); ok && a != "" {
		return a
	}
	return "system"
}

// RecordAs is Record with the actor ctx carries (ActorOf).
func RecordAs(ctx context.Context, q Execer, action string, details any) error {
	return Record(ctx, q, ActorOf(ctx), action, details)
}

// Record appends an operator action to the audit log through q: pass the caller's pgx.Tx
// to record the action in the same transaction as the change it describes, or a pool.
// actor says who acted ("key:<id>", "cli:<user>"); details is any value that marshals to
// a JSON object (nil: {}).
func Record(ctx context.Context, q Execer, actor, action string, details any) error {
	if actor == "" || len(actor) > MaxActorLength {
		return fmt.Errorf("audit: actor %q must be 1 to %d bytes", actor, MaxActorLength)
	}
	if !actionPattern.MatchString(action) {
		return fmt.Errorf("audit: action %q is not a lower-case dotted name", action)
	}
	raw := []byte(`{}`)
	if details != nil {
		var err error
		if raw, err = json.Marshal(details); err != nil {
			return fmt.Errorf("audit: details of %s: %w", action, err)
		}
		if len(raw) == 0 || raw[0] != '{' {
			return fmt.Errorf("audit: details of %s must be a JSON object", action)
		}
	}
	if len(raw) > MaxDetailsBytes {
		return fmt.Errorf("audit: details of %s are %d bytes, above the limit of %d", action, len(raw), MaxDetailsBytes)
	}
	if _, err := q.Exec(ctx, `INSERT INTO audit_log (actor, action, details) VALUES ($1, $2, $3::jsonb)`,
		actor, action, string(raw)); err != nil {
		return fmt.Errorf("audit: record %s: %w", action, err)
	}
	return nil
}

// Log returns up to limit audit events after id, oldest first; action, if not empty,
// keeps only that action.
func Log(ctx context.Context, q Querier, after int64, limit int, action string) ([]Event, error) {
	if limit <= 0 {
		limit = defaultAuditPage
	}
	if limit > MaxAuditLogPage {
		limit = MaxAuditLogPage
	}
	rows, err := q.Query(ctx, `SELECT id, at, actor, action, details::text FROM audit_log
		WHERE id > $1 AND ($2 = '' OR action = $2) ORDER BY id LIMIT $3`, after, action, limit)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Event, error) {
		var rec Event
		var details string
		err := r.Scan(&rec.ID, &rec.At, &rec.Actor, &rec.Action, &details)
		rec.At, rec.Details = rec.At.UTC(), json.RawMessage(details)
		return rec, err
	})
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	if out == nil {
		out = []Event{}
	}
	return out, nil
}
