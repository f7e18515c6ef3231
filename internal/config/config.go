// Package config reads command-line configuration in one place: a flag on
// the command line wins, then the BERTH_* environment, then an optional
// YAML file, then the flag's default.
package config

import (
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// EnvName is the environment variable for a flag: "heartbeat-interval"
// becomes BERTH_HEARTBEAT_INTERVAL.
func EnvName(flagName string) string {
	return "BERTH_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Env looks up an environment variable, like os.LookupEnv. A variable that
// is set but empty sets the flag to "" (so BERTH_METRICS_LISTEN= turns the
// metrics listener off).
type Env func(string) (string, bool)

// Apply fills every flag of fs not given on the command line from the
// environment (looked up through env) and then from the YAML file at
// configPath, if any. It must run after fs.Parse. The file's keys are the
// flag names; unknown keys are an error so that typos do not pass silently.
func Apply(fs *flag.FlagSet, env Env, configPath string) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	file, err := readFile(configPath)
	if err != nil {
		return err
	}
	for name := range file {
		if fs.Lookup(name) == nil {
			return fmt.Errorf("%s: unknown setting %q", configPath, name)
		}
	}
	var errs []string
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		src := EnvName(f.Name)
		val, ok := env(src)
		if !ok {
			val, ok = file[f.Name]
			src = configPath
		}
		if !ok {
			return
		}
		if err := fs.Set(f.Name, val); err != nil {
			errs = append(errs, fmt.Sprintf("%s: invalid value for %s: %v", src, f.Name, err))
		}
	})
	if len(errs) > 0 {
		sort.Strings(errs)
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

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
