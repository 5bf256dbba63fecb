package loadgen

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"

	"github.com/coalitionledger/coalition/ledger"
)

// gates checks the run's correctness against the database and prints one line per gate.
func gates(ctx context.Context, pool *pgxpool.Pool, w *workload, out io.Writer) (bool, error) {
	l := ledger.New(pool)
	ok := true
	gate := func(pass bool, format string, args ...any) {
		mark := "PASS"
		if !pass {
			mark, ok = "FAIL", false
		}
		fmt.Fprintf(out, "  %s  %s\n", mark, fmt.Sprintf(format, args...))
	}
	fmt.Fprintln(out, "correctness gates:")

	tb, err := l.TrialBalance(ctx, 0)
	if err != nil {
		return false, err
	}
	var sums []string
	zero := true
	for unit, total := range tb.Totals {
		sums = append(sums, unit+" "+total.String())
		zero = zero && total.IsZero()
	}
	gate(zero, "every unit sums to zero over all accounts (%s) at position %d", strings.Join(sums, ", "), tb.Position)

	mm, err := l.CheckBalances(ctx)
	if err != nil {
		return false, err
	}
	gate(len(mm) == 0, "every balance equals the sum of its postings (%d accounts differ)", len(mm))

	var below, inDebt int
	if err := pool.QueryRow(ctx, `SELECT
		count(*) FILTER (WHERE a.balance > 0 AND NOT EXISTS (SELECT 1 FROM debts d WHERE d.member_id = a.member_id AND d.outstanding > 0)),
		count(*) FILTER (WHERE a.balance > 0)
		FROM accounts a WHERE a.kind IN ('member', 'member_held')`).Scan(&below, &inDebt); err != nil {
		return false, err
	}
	gate(below == 0, "no member below zero (%d members below zero without a debt; %d in debt after an earn reversal clawed back spent points, as DESIGN allows)", below, inDebt)

	var lotsOff int
	if err := pool.QueryRow(ctx, `
		WITH l AS (SELECT member_id, sum(remaining) AS r FROM lots GROUP BY 1),
		     d AS (SELECT member_id, sum(outstanding) AS o FROM debts GROUP BY 1),
		     a AS (SELECT member_id, -sum(balance) AS b FROM accounts WHERE kind IN ('member', 'member_held') GROUP BY 1)
		SELECT count(*) FROM a LEFT JOIN l USING (member_id) LEFT JOIN d USING (member_id)
		 WHERE COALESCE(l.r, 0) - COALESCE(d.o, 0) <> a.b`).Scan(&lotsOff); err != nil {
		return false, err
	}
	gate(lotsOff == 0, "for every member, lots remaining − debt = balance + held (%d members differ)", lotsOff)

	if err := l.VerifyChain(ctx, nil); err != nil {
		gate(false, "the hash chain verifies: %v", err)
	} else {
		gate(true, "the hash chain verifies over all %d entries", tb.Position)
	}

	var dupKeys int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM idempotency_keys GROUP BY partner_id, key HAVING count(*) > 1) s`).Scan(&dupKeys); err != nil {
		return false, err
	}
	gate(dupKeys == 0, "every idempotency key has one first answer (%d keys have more)", dupKeys)

	st := w.stats
	st.mu.Lock()
	retryChecked, retryMismatch := st.retryChecked, st.retryMismatch
	refused, leaked := st.conflictsRefused, st.conflictsAccepted
	unexpected, samples := st.unexpected, append([]string(nil), st.unexpectedSamples...)
	designed, designedOK := st.designedFail, st.designedFailOK
	st.mu.Unlock()
	gate(retryMismatch == 0, "every retry got its original answer (%d retries checked, %d differed)", retryChecked, retryMismatch)
	gate(leaked == 0, "every conflicting reuse of a key was refused (%d refused with idempotency_conflict, %d not)", refused, leaked)

	if !w.cfg.crash() {
		gate(designed == designedOK, "every redemption and hold designed to fail was refused insufficient_points (%d of %d)", designedOK, designed)
		gate(unexpected == 0, "every answer was the one the model predicted (%d were not)", unexpected)
		off, checked, err := modelAgrees(ctx, pool, w)
		if err != nil {
			return false, err
		}
		gate(off == 0, "every member's balance equals the load tool's model of it (%d members checked, %d differ)", checked, off)
	} else {
		c, err := crashCheck(ctx, pool, w)
		if err != nil {
			return false, err
		}
		gate(c.lost == 0, "every acknowledged write is in the journal exactly once (%d acknowledged, %d missing or different)", c.acked, c.lost)
		gate(c.doubled == 0, "no write appears twice (%d writes sent, %d unacknowledged of which %d were committed, %d doubled)",
			c.sent, c.unacked, c.committedUnacked, c.doubled)
	}
	for _, s := range samples {
		fmt.Fprintf(out, "    e.g. %s\n", s)
	}
	return ok, nil
}

// modelAgrees compares every member the tool enrolled with its balance in the books; one
// the books lack counts as off.
func modelAgrees(ctx context.Context, pool *pgxpool.Pool, w *workload) (off, checked int, err error) {
	want := map[string]int64{}
	w.model.each(func(idx int, mm *memberModel) {
		if mm.enrolled {
			want[card(idx)] = mm.balance
		}
	})
	rows, err := pool.Query(ctx, `SELECT m.card, COALESCE(-a.balance, 0) FROM members m
		LEFT JOIN accounts a ON a.name = 'member:' || m.id WHERE m.card IS NOT NULL`)
	if err != nil {
		return 0, 0, err
	}
	defer rows.Close()
	for rows.Next() {
		var c string
		var bal decimal.Decimal
		if err := rows.Scan(&c, &bal); err != nil {
			return 0, 0, err
		}
		wb, ok := want[c]
		if !ok {
			continue
		}
		checked++
		if !bal.Equal(decimal.NewFromInt(wb)) {
			off++
		}
	}
	// A member the tool enrolled and the books do not hold is off too.
	return off + len(want) - checked, len(want), rows.Err()
}

type crashResult struct {
	sent, acked, lost, unacked, committedUnacked, doubled int
}

// crashCheck checks every write sent in crash mode: an acknowledged one (it got a 2xx
// with an entry, or a 4xx) has exactly one idempotency record, holding the answer's
// entry, and that entry is in the journal; no write has two records or two entries.
func crashCheck(ctx context.Context, pool *pgxpool.Pool, w *workload) (crashResult, error) {
	var r crashResult
	var partner, key, entry, ref, kind []string
	var acked []bool
	for _, s := range w.acked {
		r.sent++
		partner, key, entry, ref, kind = append(partner, s.partner), append(key, s.key), append(entry, s.entry), append(ref, s.ref), append(kind, s.kind)
		acked = append(acked, s.status != 0)
		if s.status != 0 {
			r.acked++
		} else {
			r.unacked++
		}
	}
	rows, err := pool.Query(ctx, `
		SELECT t.i,
		       (SELECT count(*) FROM idempotency_keys k WHERE k.partner_id = t.partner AND k.key = t.key),
		       (SELECT count(*) FROM idempotency_keys k WHERE k.partner_id = t.partner AND k.key = t.key
		           AND COALESCE(k.entry_id, '') = t.entry),
		       (SELECT count(*) FROM entries e WHERE t.entry <> '' AND e.id = t.entry),
		       (SELECT count(*) FROM entries e WHERE t.ref <> '' AND e.partner_id = t.partner AND e.kind = t.kind AND e.reference = t.ref)
		  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) WITH ORDINALITY AS t(partner, key, entry, ref, kind, i)`,
		partner, key, entry, ref, kind)
	if err != nil {
		return r, err
	}
	defer rows.Close()
	for rows.Next() {
		var i, records, matching, entries, byRef int64
		if err := rows.Scan(&i, &records, &matching, &entries, &byRef); err != nil {
			return r, err
		}
		k := i - 1
		if records > 1 || byRef > 1 {
			r.doubled++
		}
		if acked[k] {
			if records != 1 || matching != 1 || (entry[k] != "" && entries != 1) {
				r.lost++
			}
		} else if records == 1 {
			r.committedUnacked++
		}
	}
	return r, rows.Err()
}

// withDatabase returns a connection string for database name on the server of base (a
// URL or a key=value string).
func withDatabase(base, name string) string {
	if u, err := url.Parse(base); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.Path = "/" + name
		return u.String()
	}
	return base + " dbname=" + name
}

// withPoolSize sets pgxpool's pool_max_conns in a connection string (n <= 0: unchanged).
func withPoolSize(base string, n int) string {
	if n <= 0 {
		return base
	}
	if u, err := url.Parse(base); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		q := u.Query()
		q.Set("pool_max_conns", fmt.Sprint(n))
		u.RawQuery = q.Encode()
		return u.String()
	}
	return fmt.Sprintf("%s pool_max_conns=%d", base, n)
}
