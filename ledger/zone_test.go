package ledger

import (
	"testing"
	"time"
)

func TestLoadZoneLoadsOnce(t *testing.T) {
	a, err := LoadZone("Europe/Moscow")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := LoadZone("Europe/Moscow")
	if a != b || a.String() != "Europe/Moscow" {
		t.Fatalf("%p %p %s", a, b, a)
	}
	if _, err := LoadZone("Mars/Olympus"); err == nil {
		t.Fatal("an unknown zone loaded")
	}
}

// go test -run '^$' -bench 'LoadLocation|LoadZone' ./ledger/: what a batch saves under
// the journal head's lock, and an earn twice more.
func BenchmarkLoadLocation(b *testing.B) {
	for i := 0; i < b.N; i++ {
		if _, err := time.LoadLocation("Europe/Moscow"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLoadZone(b *testing.B) {
	for i := 0; i < b.N; i++ {
		if _, err := LoadZone("Europe/Moscow"); err != nil {
			b.Fatal(err)
		}
	}
}
