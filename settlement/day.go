package settlement

import (
	"time"

	"github.com/coalitionledger/coalition/ledger"
)

// Day is a business date in the coalition's time zone, such as 2026-11-22.
type Day struct{ t time.Time } // midnight UTC of the date, so that arithmetic is civil

// ParseDay reads a business date written YYYY-MM-DD.
func ParseDay(s string) (Day, error) {
	if s == "" {
		return Day{}, ledger.Errorf(ledger.CodeInvalid, "a business date is required: YYYY-MM-DD").With("field", "business_date")
	}
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return Day{}, ledger.Errorf(ledger.CodeInvalid, "%q is not a business date: write it as YYYY-MM-DD", s).With("field", "business_date")
	}
	return Day{t}, nil
}

// DayOf returns the business date of a time in loc.
func DayOf(t time.Time, loc *time.Location) Day {
	y, m, d := t.In(loc).Date()
	return Day{time.Date(y, m, d, 0, 0, 0, 0, time.UTC)}
}

// String writes the day as YYYY-MM-DD.
func (d Day) String() string { return d.t.Format(time.DateOnly) }

// Next returns the following day.
func (d Day) Next() Day { return Day{d.t.AddDate(0, 0, 1)} }

// Prev returns the day before.
func (d Day) Prev() Day { return Day{d.t.AddDate(0, 0, -1)} }

// Equal reports whether d and o are the same day.
func (d Day) Equal(o Day) bool { return d.t.Equal(o.t) }

// Before reports whether d comes before o.
func (d Day) Before(o Day) bool { return d.t.Before(o.t) }

// Start returns the first instant of the day in loc. Where a daylight-saving change
// skips the day's midnight, time.Date may answer an instant of the day before; the day
// then starts when that zone period ends.
func (d Day) Start(loc *time.Location) time.Time {
	y, m, dd := d.t.Date()
	t := time.Date(y, m, dd, 0, 0, 0, 0, loc)
	if DayOf(t, loc).Before(d) {
		_, end := t.ZoneBounds()
		t = end
	}
	return t
}

// End returns the first instant after the day in loc: the next day's start.
func (d Day) End(loc *time.Location) time.Time { return d.Next().Start(loc) }

// Last returns the day's last microsecond in loc, the business time of what a run posts.
func (d Day) Last(loc *time.Location) time.Time { return d.End(loc).Add(-time.Microsecond) }

// MarshalText writes the day as YYYY-MM-DD.
func (d Day) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads a day written YYYY-MM-DD.
func (d *Day) UnmarshalText(b []byte) error {
	v, err := ParseDay(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// Window is which entries a run settles: those with a business date on or before Day,
// a position at or below Cutoff, and in no earlier run. Runs are made day after day, so
// the earlier runs settled everything at or below PreviousCutoff (the cut-off of the run
// of the day before, 0 for the first run) except the entries of Day itself and of later
// days; this run takes the entries of Day recorded before it.
type Window struct {
	Day            Day   `json:"business_date"`
	PreviousCutoff int64 `json:"previous_cutoff"`
	Cutoff         int64 `json:"cutoff"`
}

// Settles reports whether the run settles the entry at position with business date day.
func (w Window) Settles(position int64, day Day) bool {
	if position > w.Cutoff || w.Day.Before(day) {
		return false
	}
	return position > w.PreviousCutoff || day.Equal(w.Day)
}

// SettlesAt returns when the nightly run of the day is due: hour:minute of the next day
// in loc, as time.Date makes it. A time that a daylight-saving change skips becomes an
// instant in the hour that replaces it, so the night is never skipped; if that instant
// falls back into the day itself (a skipped midnight), the run is due when the next day
// starts.
func (d Day) SettlesAt(hour, minute int, loc *time.Location) time.Time {
	next := d.Next()
	y, m, dd := next.t.Date()
	at := time.Date(y, m, dd, hour, minute, 0, 0, loc)
	if DayOf(at, loc).Before(next) {
		return next.Start(loc)
	}
	return at
}
