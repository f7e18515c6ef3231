package cli

import (
	"cmp"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/berth-dev/berth/internal/cmdline"
	"github.com/berth-dev/berth/internal/config"
)

// Output formats.
const (
	formatTable = "table"
	formatWide  = "wide"
	formatJSON  = "json"
	formatYAML  = "yaml"
)

// defaultTimeout bounds a whole command, page following included.
const defaultTimeout = 30 * time.Second

// globals are the flags every command accepts, before or after any
// command word: the root's persistent flags. Each also comes from its
// BERTH_* variable; a flag given on the command line beats it, even empty.
type globals struct {
	output, server, bundlesServer, heartbeatServer, caServer, ca, cert, key, token, tokenFile, timeout string
}

// globalSpec describes one global flag: its names, its variable and help.
type globalSpec struct {
	name, short string
	arg         string
	env         string
	usage       string
	def         string // default, for help
	field       func(*globals) *string
}

// flagName is the flag's name as messages show it: its shorthand if it
// has one (-o), else --name.
func (s globalSpec) flagName() string {
	if s.short != "" {
		return "-" + s.short
	}
	return "--" + s.name
}

func globalSpecs() []globalSpec {
	return []globalSpec{
		{"output", "o", "table|wide|json|yaml", "BERTH_OUTPUT", "output format (wide: a table with more columns; yaml: the JSON document as YAML)", formatTable, func(g *globals) *string { return &g.output }},
		{"server", "", "H:P", "BERTH_SERVER", "address of the front door (berthd serve --role api, or dev), or of the registration service", "", func(g *globals) *string { return &g.server }},
		{"bundles-server", "", "H:P", "BERTH_BUNDLES_SERVER", "address of the bundles service", "the --server address", func(g *globals) *string { return &g.bundlesServer }},
		{"heartbeat-server", "", "H:P", "BERTH_HEARTBEAT_SERVER", "address of the heartbeat service", "the --server address", func(g *globals) *string { return &g.heartbeatServer }},
		{"ca-server", "", "H:P", "BERTH_CA_SERVER", "address of the CA service", "the --server address", func(g *globals) *string { return &g.caServer }},
		{"ca", "", "FILE", "BERTH_CA", "PEM root certificates that verify the server", "", func(g *globals) *string { return &g.ca }},
		{"cert", "", "FILE", "BERTH_CERT", "PEM admin client certificate (leaf, then intermediate)", "", func(g *globals) *string { return &g.cert }},
		{"key", "", "FILE", "BERTH_KEY", "PEM private key of --cert", "", func(g *globals) *string { return &g.key }},
		{"token", "", "TOKEN", "BERTH_API_TOKEN", "API token to present instead of --cert and --key (front door only)", "", func(g *globals) *string { return &g.token }},
		{"token-file", "", "FILE", "BERTH_API_TOKEN_FILE", "file holding the API token (instead of --token)", "", func(g *globals) *string { return &g.tokenFile }},
		{"timeout", "", "D", "BERTH_TIMEOUT", "deadline of the whole command", defaultTimeout.String(), func(g *globals) *string { return &g.timeout }},
	}
}

// register adds the global flags to fs, in the order help lists them.
// Their defaults are empty so that resolve can tell "not set" apart; help
// shows the real ones.
func (g *globals) register(fs *pflag.FlagSet) {
	fs.SortFlags = false
	for _, spec := range globalSpecs() {
		fs.StringVarP(spec.field(g), spec.name, spec.short, "", spec.usage)
		_ = fs.SetAnnotation(spec.name, cmdline.AnnotArg, []string{spec.arg})
		if spec.def != "" {
			_ = fs.SetAnnotation(spec.name, cmdline.AnnotDefault, []string{spec.def})
		}
		config.SetEnv(fs, spec.name, spec.env)
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
	// caServer is the CA service's address: --ca-server,
	// BERTH_CA_SERVER, else server.
	caServer string
	// token is the API token presented as "authorization: Bearer" instead
	// of a client certificate: --token, BERTH_API_TOKEN, or the contents of
	// --token-file or BERTH_API_TOKEN_FILE.
	token   string
	timeout time.Duration
	// timeoutSet says --timeout or BERTH_TIMEOUT was given, which bounds
	// even a command that otherwise runs until interrupted (watch).
	timeoutSet bool
	// sources name where each connection setting came from, for messages.
	sources map[string]string
}

// resolve loads the global flags of fs (a parsed command's flags) from the
// environment, flag beating variable, and checks the values that can be
// checked without touching the network. Missing connection settings are
// reported later, by the commands that connect.
func (g *globals) resolve(fs *pflag.FlagSet, getenv func(string) string, path []string) (settings, error) {
	from, err := config.Load(fs, func(k string) (string, bool) { v := getenv(k); return v, v != "" }, "")
	if err != nil {
		return settings{}, usagef(path, "%s", err)
	}
	values := map[string]string{}
	sources := map[string]string{}
	for _, spec := range globalSpecs() {
		src, ok := from[spec.name]
		if !ok {
			continue
		}
		values[spec.env], sources[spec.env] = *spec.field(g), src
		if src == "--"+spec.name {
			sources[spec.env] = spec.flagName()
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
	set.caServer = values["BERTH_CA_SERVER"]
	if set.caServer == "" {
		set.caServer, sources["BERTH_CA_SERVER"] = set.server, sources["BERTH_SERVER"]
	}
	switch set.output {
	case "":
		set.output = formatTable
	case formatTable, formatWide, formatJSON, formatYAML:
	default:
		return set, usagef(path, "invalid output format %q from %s: want table, wide, json or yaml", set.output, sources["BERTH_OUTPUT"])
	}
	if err := set.resolveToken(values, path); err != nil {
		return set, err
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
type need struct{ registration, bundles, heartbeat, ca bool }

// missing lists the connection settings that are not set for reaching the
// services of n. The bundles and heartbeat addresses fall back to
// --server, so when that is unset the message asks for --server, which
// serves every service in a single-process deployment, unless only one of
// those two services is needed.
func (s settings) missing(n need) string {
	var missing []string
	noBundles := n.bundles && s.bundlesServer == ""
	noHeartbeat := n.heartbeat && s.heartbeatServer == ""
	noCA := n.ca && s.caServer == ""
	switch {
	case n.registration && s.server == "", noBundles && noHeartbeat:
		missing = append(missing, "--server or BERTH_SERVER")
	case noBundles:
		missing = append(missing, "--bundles-server or BERTH_BUNDLES_SERVER (or --server or BERTH_SERVER)")
	case noHeartbeat:
		missing = append(missing, "--heartbeat-server or BERTH_HEARTBEAT_SERVER (or --server or BERTH_SERVER)")
	case noCA:
		missing = append(missing, "--ca-server or BERTH_CA_SERVER (or --server or BERTH_SERVER)")
	}
	have := map[string]string{"BERTH_CA": s.ca, "BERTH_CERT": s.cert, "BERTH_KEY": s.key}
	if s.token != "" {
		// The token is the credential; the CA still verifies the server.
		have = map[string]string{"BERTH_CA": s.ca}
	}
	for _, spec := range globalSpecs() {
		if v, ok := have[spec.env]; ok && v == "" {
			missing = append(missing, fmt.Sprintf("%s or %s", spec.flagName(), spec.env))
		}
	}
	return strings.Join(missing, ", ")
}

// resolveToken sets the API token from --token or --token-file (or their
// variables). berthctl presents one credential: a token given together
// with a client certificate is refused rather than one silently winning,
// so that who acts is never a surprise.
func (s *settings) resolveToken(values map[string]string, path []string) error {
	tok, file := values["BERTH_API_TOKEN"], values["BERTH_API_TOKEN_FILE"]
	switch {
	case tok == "" && file == "":
		return nil
	case tok != "" && file != "":
		return usagef(path, "both %s and %s give an API token: use one", s.sources["BERTH_API_TOKEN"], s.sources["BERTH_API_TOKEN_FILE"])
	case s.cert != "" || s.key != "":
		src := cmp.Or(s.sources["BERTH_API_TOKEN"], s.sources["BERTH_API_TOKEN_FILE"])
		certSrc := s.sources["BERTH_CERT"]
		if s.cert == "" {
			certSrc = s.sources["BERTH_KEY"]
		}
		return usagef(path, "an API token (%s) and a client certificate (%s) are both set: berthctl presents one; "+
			"unset the certificate (--cert= --key=) to use the token", src, certSrc)
	}
	if file != "" {
		raw, err := os.ReadFile(file)
		if err != nil {
			return usagef(path, "read the API token from %s: %v", s.sources["BERTH_API_TOKEN_FILE"], err)
		}
		tok = strings.TrimSpace(string(raw))
		if tok == "" {
			return usagef(path, "%s %s holds no API token", s.sources["BERTH_API_TOKEN_FILE"], file)
		}
	}
	if strings.ContainsFunc(tok, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
		// Spaces and control characters cannot be in a token, nor in a
		// header value; say so rather than send it.
		return usagef(path, "the API token from %s has spaces or control characters; a token is berth_ followed by hex digits",
			cmp.Or(s.sources["BERTH_API_TOKEN"], s.sources["BERTH_API_TOKEN_FILE"]))
	}
	s.token = tok
	return nil
}
