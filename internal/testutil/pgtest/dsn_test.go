package pgtest

import "testing"

func TestWithDatabase(t *testing.T) {
	tests := []struct {
		name, dsn, want string
	}{
		{"url", "postgres://u:p@h:5432/postgres?sslmode=disable", "postgres://u:p@h:5432/db1?sslmode=disable"},
		{"url without path", "postgresql://u@h", "postgresql://u@h/db1"},
		{"keyword", "host=/run/postgresql dbname=postgres", "host=/run/postgresql dbname=postgres dbname=db1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := withDatabase(tt.dsn, "db1")
			if err != nil {
				t.Fatalf("withDatabase: %v", err)
			}
			if got != tt.want {
				t.Errorf("withDatabase(%q) = %q, want %q", tt.dsn, got, tt.want)
			}
		})
	}
}
