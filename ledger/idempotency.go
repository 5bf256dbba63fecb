package ledger

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/coalitionledger/coalition/internal/pg"
)

// DefaultKeyRetention is how long idempotency keys are kept at least (DESIGN: 30 days).
const DefaultKeyRetention = 30 * 24 * time.Hour

// KeyMaintenance says what MaintainIdempotencyKeys changed.
type KeyMaintenance struct {
	Created []string // partitions created
	Dropped []string // partitions dropped
}

func monthStart(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

func keyPartition(month time.Time) string { return "idempotency_keys_" + month.Format("2006_01") }

// MaintainIdempotencyKeys keeps the idempotency records partitioned by month: it makes
// sure this month and the next have their partition (moving in any records the default
// partition caught), and drops whole partitions whose month ended more than keep before
// now, so that old keys go a partition at a time, never row by row. keep 0 drops nothing.
func (l *Ledger) MaintainIdempotencyKeys(ctx context.Context, now time.Time, keep time.Duration) (KeyMaintenance, error) {
	var out KeyMaintenance
	this := monthStart(now)
	for _, month := range []time.Time{this, this.AddDate(0, 1, 0)} {
		name := keyPartition(month)
		var exists bool
		if err := l.pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, name).Scan(&exists); err != nil {
			return out, fmt.Errorf("idempotency partitions: %w", err)
		}
		if exists {
			continue
		}
		from, to := month.Format(time.RFC3339), month.AddDate(0, 1, 0).Format(time.RFC3339)
		ident := pgx.Identifier{name}.Sanitize()
		created := false
		err := pg.InTx(ctx, l.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `LOCK TABLE idempotency_keys IN SHARE ROW EXCLUSIVE MODE`); err != nil {
				return err
			}
			// Another process may have made it while this one waited for the lock.
			if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, name).Scan(&exists); err != nil || exists {
				return err
			}
			created = true
			stmts := []string{
				`CREATE TABLE ` + ident + ` (LIKE idempotency_keys INCLUDING DEFAULTS INCLUDING CONSTRAINTS)`,
				fmt.Sprintf(`INSERT INTO %s SELECT * FROM idempotency_keys_default WHERE created_at >= '%s' AND created_at < '%s'`, ident, from, to),
				fmt.Sprintf(`DELETE FROM idempotency_keys_default WHERE created_at >= '%s' AND created_at < '%s'`, from, to),
				fmt.Sprintf(`ALTER TABLE idempotency_keys ATTACH PARTITION %s FOR VALUES FROM ('%s') TO ('%s')`, ident, from, to),
			}
			for _, s := range stmts {
				if _, err := tx.Exec(ctx, s); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return out, fmt.Errorf("create partition %s: %w", name, err)
		}
		if created {
			out.Created = append(out.Created, name)
		}
	}

	if keep <= 0 {
		return out, nil
	}
	cutoff := now.Add(-keep)
	rows, err := l.pool.Query(ctx, `
		SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		 WHERE i.inhparent = 'idempotency_keys'::regclass AND c.relname <> 'idempotency_keys_default'
		 ORDER BY 1`)
	if err != nil {
		return out, fmt.Errorf("idempotency partitions: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return out, fmt.Errorf("idempotency partitions: %w", err)
	}
	for _, name := range names {
		var y, m int
		if _, err := fmt.Sscanf(name, "idempotency_keys_%d_%d", &y, &m); err != nil {
			continue
		}
		end := time.Date(y, time.Month(m), 1, 0, 0, 0, 0, time.UTC).AddDate(0, 1, 0)
		if !end.Before(cutoff) {
			continue
		}
		if _, err := l.pool.Exec(ctx, `DROP TABLE `+pgx.Identifier{name}.Sanitize()); err != nil {
			return out, fmt.Errorf("drop partition %s: %w", name, err)
		}
		out.Dropped = append(out.Dropped, name)
	}
	// Records the default partition caught for months long gone (none, normally).
	if _, err := l.pool.Exec(ctx, `DELETE FROM idempotency_keys_default WHERE created_at < $1`, cutoff); err != nil {
		return out, fmt.Errorf("idempotency keys: %w", err)
	}
	return out, nil
}
