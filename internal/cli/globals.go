package cli

import (
	"flag"
	"fmt"
	"strings"
	"time"
)

// Output formats.
const (
	formatTable = "table"
	formatJSON  = "json"
)

// defaultTimeout bounds a whole command, page following included.
const defaultTimeout = 30 * time.Second

// setting is a global flag's value and whether the command line gave it, so
// that a flag beats its environment variable even when both are set.
type setting struct {
	value string
	set   bool
}

func (s *setting) String() string {
	if s == nil {
		return ""
	}
	return s.value
}

func (s *setting) Set(v string) error {
	s.value, s.set = v, true
	return nil
}

// globals are the flags every command accepts, on every level of the tree.
type globals struct {
	output, server, bundlesServer, heartbeatServer, ca, cert, key, timeout setting
}

// globalSpec describes one global flag: its names, its variable and help.
type globalSpec struct {
	names []string
	arg   string
	env   string
	usage string
	def   string // default, for help
	field func(*globals) *setting
}

func (s globalSpec) synopsis() string {
	parts := make([]string, len(s.names))
	for i, n := range s.names {
		if len(n) == 1 {
			parts[i] = "-" + n
		} else {
			parts[i] = "--" + n
		}
	}
	return strings.Join(parts, ", ")
}

// flagName is the flag's name as messages show it.
func (s globalSpec) flagName() string {
	n := s.names[0]
	if len(n) == 1 {
		return "-" + n
	}
	return "--" + n
}

func globalSpecs() []globalSpec {
	return []globalSpec{
		{[]string{"o", "output"}, "table|json", "BERTH_OUTPUT", "output format", formatTable, func(g *globals) *setting { return &g.output }},
		{[]string{"server"}, "H:P", "BERTH_SERVER", "address of the registration service", "", func(g *globals) *setting { return &g.server }},
		{[]string{"bundles-server"}, "H:P", "BERTH_BUNDLES_SERVER", "address of the bundles service", "the --server address", func(g *globals) *setting { return &g.bundlesServer }},
		{[]string{"heartbeat-server"}, "H:P", "BERTH_HEARTBEAT_SERVER", "address of the heartbeat service", "the --server address", func(g *globals) *setting { return &g.heartbeatServer }},
		{[]string{"ca"}, "FILE", "BERTH_CA", "PEM root certificates that verify the server", "", func(g *globals) *setting { return &g.ca }},
		{[]string{"cert"}, "FILE", "BERTH_CERT", "PEM admin client certificate (leaf, then intermediate)", "", func(g *globals) *setting { return &g.cert }},
		{[]string{"key"}, "FILE", "BERTH_KEY", "PEM private key of --cert", "", func(g *globals) *setting { return &g.key }},
		{[]string{"timeout"}, "D", "BERTH_TIMEOUT", "deadline of the whole command", defaultTimeout.String(), func(g *globals) *setting { return &g.timeout }},
	}
}

// register adds the global flags to fs.
func (g *globals) register(fs *flag.FlagSet) {
	for _, spec := range globalSpecs() {
		for _, n := range spec.names {
			fs.Var(spec.field(g), n, spec.usage)
		}
	}
}

// settings are the global flags resolved against the environment.
type settings struct {
	output                string
	server, ca, cert, key string
	// bundlesServer is the bundles service's address: --bundles-server,
	// else BERTH_BUNDLES_SERVER, else server, which is right wherever one
	// process serves every role (berthd dev, berthd serve --role all).
	bundlesServer string
	// heartbeatServer is the heartbeat service's address, found the same
	// way: --heartbeat-server, BERTH_HEARTBEAT_SERVER, else server.
	heartbeatServer string
	timeout         time.Duration
	// timeoutSet says --timeout or BERTH_TIMEOUT was given, which bounds
	// even a command that otherwise runs until interrupted (watch).
	timeoutSet bool
	// sources name where each connection setting came from, for messages.
	sources map[string]string
}

// resolve applies flag-beats-environment and checks the values that can be
// checked without touching the network. Missing connection settings are
// reported later, by the commands that connect.
func (g *globals) resolve(getenv func(string) string, path []string) (settings, error) {
	values := map[string]string{}
	sources := map[string]string{}
	for _, spec := range globalSpecs() {
		s := spec.field(g)
		switch {
		case s.set:
			values[spec.env], sources[spec.env] = s.value, spec.flagName()
		case getenv(spec.env) != "":
			values[spec.env], sources[spec.env] = getenv(spec.env), spec.env
		}
	}
	set := settings{
		output:  values["BERTH_OUTPUT"],
		server:  values["BERTH_SERVER"],
		ca:      values["BERTH_CA"],
		cert:    values["BERTH_CERT"],
		key:     values["BERTH_KEY"],
		timeout: defaultTimeout,
		sources: sources,
	}
	set.bundlesServer = values["BERTH_BUNDLES_SERVER"]
	if set.bundlesServer == "" {
		set.bundlesServer, sources["BERTH_BUNDLES_SERVER"] = set.server, sources["BERTH_SERVER"]
	}
	set.heartbeatServer = values["BERTH_HEARTBEAT_SERVER"]
	if set.heartbeatServer == "" {
		set.heartbeatServer, sources["BERTH_HEARTBEAT_SERVER"] = set.server, sources["BERTH_SERVER"]
	}
	switch set.output {
	case "":
		set.output = formatTable
	case formatTable, formatJSON:
	default:
		return set, usagef(path, "invalid output format %q from %s: want table or json", set.output, sources["BERTH_OUTPUT"])
	}
	if v := values["BERTH_TIMEOUT"]; v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return set, usagef(path, "invalid timeout %q from %s: want a positive Go duration such as 30s or 2m", v, sources["BERTH_TIMEOUT"])
		}
		set.timeout, set.timeoutSet = d, true
	}
	return set, nil
}

// missingConnection lists the connection settings that are not set for
// reaching the registration service, naming both the flag and the variable
// of each.
func (s settings) missingConnection() string {
	return s.missing(need{registration: true})
}

// need says which services a command connects to.
type need struct{ registration, bundles, heartbeat bool }

// missing lists the connection settings that are not set for reaching the
// services of n. The bundles and heartbeat addresses fall back to
// --server, so when that is unset the message asks for --server, which
// serves every service in a single-process deployment, unless only one of
// those two services is needed.
func (s settings) missing(n need) string {
	var missing []string
	noBundles := n.bundles && s.bundlesServer == ""
	noHeartbeat := n.heartbeat && s.heartbeatServer == ""
	switch {
	case n.registration && s.server == "", noBundles && noHeartbeat:
		missing = append(missing, "--server or BERTH_SERVER")
	case noBundles:
		missing = append(missing, "--bundles-server or BERTH_BUNDLES_SERVER (or --server or BERTH_SERVER)")
	case noHeartbeat:
		missing = append(missing, "--heartbeat-server or BERTH_HEARTBEAT_SERVER (or --server or BERTH_SERVER)")
	}
	have := map[string]string{"BERTH_CA": s.ca, "BERTH_CERT": s.cert, "BERTH_KEY": s.key}
	for _, spec := range globalSpecs() {
		if v, ok := have[spec.env]; ok && v == "" {
			missing = append(missing, fmt.Sprintf("%s or %s", spec.flagName(), spec.env))
		}
	}
	return strings.Join(missing, ", ")
}
