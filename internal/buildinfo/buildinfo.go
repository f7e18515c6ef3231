// Package buildinfo says which build of berth is running: the module
// version, the commit, the build date and the Go version. The Makefile
// stamps the first three at link time; a plain `go build` or `go install`
// still reports what the Go toolchain embeds (runtime/debug.ReadBuildInfo).
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// These are set only by the linker, for example
//
//	go build -ldflags "-X github.com/berth-dev/berth/internal/buildinfo.version=v1.2.0"
//
// which can write nothing but package-level string variables; nothing
// assigns them at run time.
var (
	version string
	commit  string
	date    string
)

// unknown stands in for what neither the linker nor the toolchain recorded.
const unknown = "unknown"

// Info describes one build.
type Info struct {
	// Version is the module version, such as v1.2.0 or a pseudo-version.
	Version string `json:"version"`
	// Commit is the VCS revision, with "-dirty" for a modified tree.
	Commit string `json:"commit"`
	// Date is when the binary was built (RFC 3339), or the commit time when
	// only the toolchain's stamp is known.
	Date string `json:"build_date"`
	// GoVersion is the Go toolchain that built the binary.
	GoVersion string `json:"go_version"`
	// Platform is GOOS/GOARCH.
	Platform string `json:"platform"`
}

// Get returns the running binary's build: what the linker set, else what
// the toolchain embedded, else "unknown".
func Get() Info {
	bi, _ := debug.ReadBuildInfo()
	return resolve(version, commit, date, bi)
}

// resolve merges link-time values with the embedded build information.
func resolve(version, commit, date string, bi *debug.BuildInfo) Info {
	info := Info{Version: version, Commit: commit, Date: date, GoVersion: runtime.Version(),
		Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi != nil {
		if info.Version == "" && bi.Main.Version != "" {
			info.Version = bi.Main.Version
		}
		if bi.GoVersion != "" {
			info.GoVersion = bi.GoVersion
		}
		var rev, at string
		modified := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				at = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if info.Commit == "" && rev != "" {
			info.Commit = rev
			if modified {
				info.Commit += "-dirty"
			}
		}
		if info.Date == "" {
			info.Date = at
		}
	}
	for _, f := range []*string{&info.Version, &info.Commit, &info.Date} {
		if *f == "" {
			*f = unknown
		}
	}
	return info
}

// String is the one line --version prints after the program's name:
// "v1.2.0 (commit 1a2b3c4, built 2026-12-05T10:00:00Z, go1.26.8 linux/amd64)".
func (i Info) String() string {
	return fmt.Sprintf("%s (commit %s, built %s, %s %s)", i.Version, i.Commit, i.Date, i.GoVersion, i.Platform)
}
