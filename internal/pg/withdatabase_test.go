package pg

import (
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestWithDatabase(t *testing.T) {
	for _, dsn := range []string{
		"postgres://postgres@127.0.0.1:5432/postgres",
		"postgresql://u:p@db.example:6543/main?sslmode=disable&dbname=other",
		"host=/tmp/x port=5432 user=postgres dbname=postgres",
		"host=localhost user=postgres",
	} {
		got := WithDatabase(dsn, "t_12_ab_3")
		cfg, err := pgx.ParseConfig(got)
		if err != nil {
			t.Errorf("WithDatabase(%q) = %q: %v", dsn, got, err)
			continue
		}
		orig, err := pgx.ParseConfig(dsn)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Database != "t_12_ab_3" || cfg.Host != orig.Host || cfg.Port != orig.Port || cfg.User != orig.User || cfg.Password != orig.Password {
			t.Errorf("WithDatabase(%q) = %q: database %q host %q port %d user %q", dsn, got, cfg.Database, cfg.Host, cfg.Port, cfg.User)
		}
	}
}
