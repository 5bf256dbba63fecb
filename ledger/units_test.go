package ledger

import (
	"testing"
	"time"
)

func TestSpanNamesTheLargestWholeUnit(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		168 * time.Hour: "7 days", 24 * time.Hour: "1 day", 5 * time.Minute: "5 minutes",
		90 * time.Second: "90 seconds", 36 * time.Hour: "36 hours", 1500 * time.Millisecond: "1.5s",
	} {
		if got := Span(d); got != want {
			t.Errorf("Span(%s) = %q, want %q", d, got, want)
		}
	}
}
