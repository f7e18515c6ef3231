package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestResolve(t *testing.T) {
	embedded := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/berth-dev/berth", Version: "v0.0.0-20261205100000-1a2b3c4d5e6f+dirty"},
		Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "1a2b3c4d5e6f"},
			{Key: "vcs.time", Value: "2026-12-05T10:00:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	platform := runtime.GOOS + "/" + runtime.GOARCH
	tests := []struct {
		name                  string
		version, commit, date string
		bi                    *debug.BuildInfo
		want                  Info
	}{
		{name: "linker wins", version: "v1.2.0", commit: "abc", date: "2026-12-06T00:00:00Z", bi: embedded,
			want: Info{Version: "v1.2.0", Commit: "abc", Date: "2026-12-06T00:00:00Z", GoVersion: "go1.26.8", Platform: platform}},
		{name: "toolchain stamp", bi: embedded,
			want: Info{Version: "v0.0.0-20261205100000-1a2b3c4d5e6f+dirty", Commit: "1a2b3c4d5e6f-dirty", Date: "2026-12-05T10:00:00Z", GoVersion: "go1.26.8", Platform: platform}},
		{name: "nothing known", bi: nil,
			want: Info{Version: "unknown", Commit: "unknown", Date: "unknown", GoVersion: runtime.Version(), Platform: platform}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := resolve(tt.version, tt.commit, tt.date, tt.bi); got != tt.want {
				t.Errorf("resolve = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestGetAndString(t *testing.T) {
	got := Get()
	if got.GoVersion == "" || got.Version == "" || got.Commit == "" || got.Date == "" {
		t.Fatalf("Get() = %+v: every field must say something", got)
	}
	s := Info{Version: "v1.2.0", Commit: "abc", Date: "2026-12-06T00:00:00Z", GoVersion: "go1.26.8", Platform: "linux/amd64"}.String()
	if want := "v1.2.0 (commit abc, built 2026-12-06T00:00:00Z, go1.26.8 linux/amd64)"; s != want {
		t.Errorf("String() = %q, want %q", s, want)
	}
	if strings.Contains(got.String(), "\n") {
		t.Errorf("String() spans lines: %q", got.String())
	}
}
