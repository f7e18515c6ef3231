// Package config reads command-line configuration in one place, the same
// way for every berth binary: a flag given on the command line wins, then
// its BERTH_* environment variable, then an optional YAML file, then the
// flag's default.
//
// An environment variable that is set but empty counts as unset, so that
// `BERTH_X= cmd` and `${BERTH_X:-}` in a Compose file never change a
// setting by accident. A flag given explicitly empty on the command line
// (--metrics-listen "") is an explicit value and keeps its meaning.
package config

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// Flag annotations read by Load.
const (
	// annotEnv names a flag's variable when it is not EnvName(flag).
	annotEnv = "berth.env"
	// annotNoEnv marks a flag that is a command's argument rather than a
	// setting: no variable and no file key set it.
	annotNoEnv = "berth.noenv"
	// annotCobra is how cobra marks the flags it adds itself (--help,
	// --version): they are never settings.
	annotCobra = "cobra_annotation_flag_set_by_cobra"
)

// EnvName is the environment variable of a flag by default:
// "heartbeat-interval" becomes BERTH_HEARTBEAT_INTERVAL.
func EnvName(flagName string) string {
	return "BERTH_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Env looks up an environment variable, like os.LookupEnv.
type Env func(string) (string, bool)

// SetEnv gives the flag name of fs the variable env instead of
// EnvName(name), for a flag whose default variable would mean something
// else to another berth binary.
func SetEnv(fs *pflag.FlagSet, name, env string) {
	mustAnnotate(fs, name, annotEnv, env)
}

// NoEnv marks every flag now in fs as a command argument: Load leaves it
// alone. berthctl's per-command flags are such arguments (its --label
// filters in one command and labels in another).
func NoEnv(fs *pflag.FlagSet) {
	fs.VisitAll(func(f *pflag.Flag) { mustAnnotate(fs, f.Name, annotNoEnv, "true") })
}

func mustAnnotate(fs *pflag.FlagSet, name, key, value string) {
	if err := fs.SetAnnotation(name, key, []string{value}); err != nil {
		panic(fmt.Sprintf("config: %v", err)) // a programming error: the flag is not defined
	}
}

// VarOf returns the environment variable that sets f, or false for a flag
// that no variable sets.
func VarOf(f *pflag.Flag) (string, bool) {
	if len(f.Annotations[annotNoEnv]) > 0 || len(f.Annotations[annotCobra]) > 0 {
		return "", false
	}
	if v := f.Annotations[annotEnv]; len(v) == 1 {
		return v[0], true
	}
	return EnvName(f.Name), true
}

// Sources says where each flag's value came from: "--name" for the
// command line, the variable's name, or the file's path. Flags left at
// their default are missing.
type Sources map[string]string

// Load fills every flag of fs that the command line did not set, from its
// variable (through env) and then from the YAML file named by the flag
// configFlag (itself set by flag or variable; "" for binaries without a
// file). It runs after fs is parsed. The file's keys are flag names;
// unknown keys are errors so that typos do not pass silently. Load does
// not mark the flags it sets as changed: fs.Changed keeps meaning "given
// on the command line".
func Load(fs *pflag.FlagSet, env Env, configFlag string) (Sources, error) {
	src := Sources{}
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			src[f.Name] = "--" + f.Name
		}
	})
	var errs []string
	set := func(f *pflag.Flag, val, from, what string) {
		if err := f.Value.Set(val); err != nil {
			errs = append(errs, fmt.Sprintf("invalid value %q for %s: %v", val, what, err))
			return
		}
		src[f.Name] = from
	}
	// Variables first, --config's own included, so that the file is known.
	fs.VisitAll(func(f *pflag.Flag) {
		name, ok := VarOf(f)
		if !ok || f.Changed {
			return
		}
		if v, ok := env(name); ok && v != "" {
			set(f, v, name, name)
		}
	})
	if len(errs) > 0 {
		return nil, joined(errs)
	}
	path := ""
	if configFlag != "" {
		if f := fs.Lookup(configFlag); f != nil {
			path = f.Value.String()
		}
	}
	file, err := readFile(path)
	if err != nil {
		return nil, err
	}
	for _, key := range sortedKeys(file) {
		f := fs.Lookup(key)
		if _, ok := settable(f, configFlag); !ok {
			return nil, fmt.Errorf("%s: unknown setting %q", path, key)
		}
		if _, given := src[key]; given {
			continue
		}
		set(f, file[key], path, key+" in "+path)
	}
	if len(errs) > 0 {
		return nil, joined(errs)
	}
	return src, nil
}

// settable reports whether a file may set f: a flag bound to a variable,
// other than the one naming the file.
func settable(f *pflag.Flag, configFlag string) (string, bool) {
	if f == nil || f.Name == configFlag {
		return "", false
	}
	return VarOf(f)
}

func joined(errs []string) error {
	sort.Strings(errs)
	return fmt.Errorf("%s", strings.Join(errs, "; "))
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// readFile reads a YAML map of settings; lists become comma-separated
// values (as for repeatable flags such as --san) and null is "".
func readFile(path string) (map[string]string, error) {
	if path == "" {
		return nil, nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("parse config %s: %w", path, err)
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		switch v := v.(type) {
		case nil:
			out[k] = ""
		case []any:
			parts := make([]string, len(v))
			for i, p := range v {
				parts[i] = fmt.Sprint(p)
			}
			out[k] = strings.Join(parts, ",")
		default:
			out[k] = fmt.Sprint(v)
		}
	}
	return out, nil
}
