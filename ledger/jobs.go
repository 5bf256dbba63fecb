package ledger

import (
	"context"
	"encoding/json"
	"time"
)

// JobBatch is how many entries a job posts per batch: short batches keep the journal head
// free for the tills between them.
const JobBatch = 500

// maxJobRounds bounds a job's loop: 10,000 batches of JobBatch is five million entries.
const maxJobRounds = 10000

// ExpireDue moves the available points of every lot whose expiry is at or before now to
// its issuer's breakage, in short batches, and returns how many lots it expired. It is
// idempotent: a lot with nothing left to expire is skipped, so a second run posts nothing.
func (l *Ledger) ExpireDue(ctx context.Context, now time.Time, progress func(done int)) (int, error) {
	return l.runJob(ctx, progress, func() ([]Entry, error) {
		lots, err := l.LotsExpiredBy(ctx, now, JobBatch)
		entries := make([]Entry, len(lots))
		for i, lot := range lots {
			entries[i] = Entry{Kind: EntryExpiry, Partner: OperatorIssuer, Member: lot.Member, BusinessTime: now, Op: Expire{Lot: lot.ID}}
		}
		return entries, err
	})
}

// ReleaseExpiredHolds voids every open hold whose expiry is at or before now (a timeout),
// in short batches, and returns how many it voided.
func (l *Ledger) ReleaseExpiredHolds(ctx context.Context, now time.Time, progress func(done int)) (int, error) {
	return l.runJob(ctx, progress, func() ([]Entry, error) {
		holds, err := l.OpenHoldsExpiredBy(ctx, now, JobBatch)
		entries := make([]Entry, len(holds))
		for i, h := range holds {
			entries[i] = Entry{Kind: EntryVoid, Partner: OperatorIssuer, Member: h.Member, BusinessTime: now, Op: Release{Hold: h.ID},
				Metadata: HoldMetadata(h.ID)}
		}
		return entries, err
	})
}

// runJob posts the batches next returns until it returns none, or a batch changes nothing.
func (l *Ledger) runJob(ctx context.Context, progress func(int), next func() ([]Entry, error)) (int, error) {
	done := 0
	for round := 0; round < maxJobRounds; round++ {
		entries, err := next()
		if err != nil || len(entries) == 0 {
			return done, err
		}
		res, err := l.Post(ctx, entries)
		if err != nil {
			return done, err
		}
		accepted := 0
		for _, r := range res {
			if r.Err == nil {
				accepted++
			}
		}
		done += accepted
		if progress != nil {
			progress(done)
		}
		if accepted == 0 {
			return done, nil // what is left was taken by someone else meanwhile
		}
	}
	return done, nil
}

// HoldMetadata is the metadata of an entry that settles a hold (a capture, a void, a
// timeout's release): {"hold": id}, so that the journal ties it to the hold.
func HoldMetadata(id string) json.RawMessage {
	raw, _ := json.Marshal(map[string]string{"hold": id})
	return raw
}
