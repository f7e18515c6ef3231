package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/protobuf/types/known/durationpb"

	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// The settings berthctl settings set takes.
const (
	settingHeartbeatInterval = "heartbeat-interval"
	settingHeartbeatGrace    = "heartbeat-grace"
	settingBundleApproval    = "bundle-approval"
)

func settingsCommand() *command {
	return &command{
		name:    "settings",
		summary: "Show and change the fleet's settings",
		help: "Show and change settings stored in berth's database, which every replica applies and which " +
			"override berthd's flags (--heartbeat-interval, --heartbeat-grace, --bundle-require-approval) " +
			"until set back to default. Changing them needs the admin role.",
		subs: []*command{
			{name: "get", summary: "Show the settings in force", setup: setupSettingsGet,
				help: "Show the settings in force, the configured defaults and who last changed them."},
			{name: "set", args: "NAME VALUE", summary: "Change a setting", setup: setupSettingsSet,
				help: "Change a setting:\n" +
					"  heartbeat-interval DURATION   time between beats (1s to 1h), e.g. 15s; default: berthd's\n" +
					"  heartbeat-grace DURATION      silence before a node is unreachable (over twice the interval, at most 24h)\n" +
					"  bundle-approval required|auto|default   whether node uploads wait for an administrator\n" +
					"DURATION may be default, which goes back to berthd's configured value."},
		},
	}
}

// settingsJSON is the output of settings get and set. Keep the field names.
type settingsJSON struct {
	HeartbeatInterval          string  `json:"heartbeat_interval"`
	HeartbeatGrace             string  `json:"heartbeat_grace"`
	HeartbeatDefaultInterval   string  `json:"heartbeat_default_interval"`
	HeartbeatDefaultGrace      string  `json:"heartbeat_default_grace"`
	HeartbeatLoadFactor        float64 `json:"heartbeat_load_factor"`
	HeartbeatEffectiveInterval string  `json:"heartbeat_effective_interval"`
	HeartbeatEffectiveGrace    string  `json:"heartbeat_effective_grace"`
	BundleApproval             string  `json:"bundle_approval"`
	BundleDefaultApproval      string  `json:"bundle_default_approval"`
	BundleApprovalSet          bool    `json:"bundle_approval_set"`
	BundleApprovalUpdatedBy    string  `json:"bundle_approval_updated_by"`
	BundleApprovalUpdatedAt    string  `json:"bundle_approval_updated_at"`
}

func durationText(d *durationpb.Duration) string {
	if d == nil {
		return ""
	}
	return shortGoDuration(d.AsDuration())
}

func settingsView(hb *berthv1.HeartbeatSettings, b *berthv1.BundleSettings) settingsJSON {
	return settingsJSON{
		HeartbeatInterval: durationText(hb.GetInterval()), HeartbeatGrace: durationText(hb.GetGrace()),
		HeartbeatDefaultInterval: durationText(hb.GetDefaultInterval()), HeartbeatDefaultGrace: durationText(hb.GetDefaultGrace()),
		HeartbeatLoadFactor:        hb.GetLoadFactor(),
		HeartbeatEffectiveInterval: durationText(hb.GetEffectiveInterval()), HeartbeatEffectiveGrace: durationText(hb.GetEffectiveGrace()),
		BundleApproval: b.GetApproval(), BundleDefaultApproval: b.GetDefaultApproval(), BundleApprovalSet: b.GetApprovalSet(),
		BundleApprovalUpdatedBy: b.GetUpdatedBy(), BundleApprovalUpdatedAt: rfc3339(b.GetUpdatedAt()),
	}
}

func (s *session) emitSettings(v settingsJSON, now time.Time, b *berthv1.BundleSettings) error {
	return s.emit(v, func(w io.Writer) {
		fmt.Fprintln(w, "SETTING\tVALUE\tDEFAULT\tIN FORCE")
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", settingHeartbeatInterval, v.HeartbeatInterval, v.HeartbeatDefaultInterval, v.HeartbeatEffectiveInterval)
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", settingHeartbeatGrace, v.HeartbeatGrace, v.HeartbeatDefaultGrace, v.HeartbeatEffectiveGrace)
		changed := "-"
		if v.BundleApprovalSet {
			changed = "set by " + v.BundleApprovalUpdatedBy + " " + relTime(b.GetUpdatedAt(), now)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", settingBundleApproval, v.BundleApproval, v.BundleDefaultApproval, v.BundleApproval)
		if v.HeartbeatLoadFactor > 1 {
			fmt.Fprintf(w, "\nThe heartbeat tier is stretching the timings by %.2f under load.\n", v.HeartbeatLoadFactor)
		}
		if v.BundleApprovalSet {
			fmt.Fprintf(w, "\nbundle-approval: %s.\n", changed)
		}
	})
}

// readSettings asks both services for their settings.
func (s *session) readSettings(ctx context.Context) (*berthv1.HeartbeatSettings, *berthv1.BundleSettings, error) {
	hc, err := s.heartbeatAdmin()
	if err != nil {
		return nil, nil, err
	}
	hb, err := hc.GetHeartbeatSettings(ctx, &berthv1.GetHeartbeatSettingsRequest{})
	if err != nil {
		return nil, nil, s.heartbeatCallError("get heartbeat settings", err)
	}
	bc, err := s.bundleAdmin()
	if err != nil {
		return nil, nil, err
	}
	b, err := bc.GetBundleSettings(ctx, &berthv1.GetBundleSettingsRequest{})
	if err != nil {
		return nil, nil, s.bundleCallError("get bundle settings", err)
	}
	return hb.GetSettings(), b.GetSettings(), nil
}

func setupSettingsGet(*pflag.FlagSet) action {
	return func(ctx context.Context, s *session, args []string) error {
		if err := s.exactArgs(args); err != nil {
			return err
		}
		hb, b, err := s.readSettings(ctx)
		if err != nil {
			return err
		}
		return s.emitSettings(settingsView(hb, b), s.cfg.Now(), b)
	}
}

// parseSettingDuration reads a heartbeat duration: a Go duration, or
// default (0, which the service takes as its configured value).
func parseSettingDuration(v string) (time.Duration, bool) {
	if v == "default" {
		return 0, true
	}
	d, err := time.ParseDuration(v)
	return d, err == nil && d > 0
}

func setupSettingsSet(*pflag.FlagSet) action {
	return func(ctx context.Context, s *session, args []string) error {
		if err := s.exactArgs(args, "setting name", "value"); err != nil {
			return err
		}
		name, value := args[0], args[1]
		switch name {
		case settingHeartbeatInterval, settingHeartbeatGrace:
			d, ok := parseSettingDuration(value)
			if !ok {
				return s.usagef("invalid %s %q: want a Go duration such as 15s or 2m, or default", name, value)
			}
			if err := s.setHeartbeat(ctx, name, d); err != nil {
				return err
			}
		case settingBundleApproval:
			if value != "required" && value != "auto" && value != "default" {
				return s.usagef("invalid %s %q: want required, auto or default", name, value)
			}
			c, err := s.bundleAdmin()
			if err != nil {
				return err
			}
			if _, err := c.SetBundleSettings(ctx, &berthv1.SetBundleSettingsRequest{Approval: value}); err != nil {
				return s.bundleCallError("set "+name, err)
			}
		default:
			return s.usagef("unknown setting %q: want %s, %s or %s", name, settingHeartbeatInterval, settingHeartbeatGrace, settingBundleApproval)
		}
		hb, b, err := s.readSettings(ctx)
		if err != nil {
			return err
		}
		return s.emitSettings(settingsView(hb, b), s.cfg.Now(), b)
	}
}

// setHeartbeat changes one of the two heartbeat timings, keeping the
// other as set: the service takes both at once. A new interval keeps the
// grace only while it stays over twice the interval; otherwise (and when
// the grace was never set) the service scales the default grace with it.
func (s *session) setHeartbeat(ctx context.Context, name string, d time.Duration) error {
	c, err := s.heartbeatAdmin()
	if err != nil {
		return err
	}
	cur, err := c.GetHeartbeatSettings(ctx, &berthv1.GetHeartbeatSettingsRequest{})
	if err != nil {
		return s.heartbeatCallError("get heartbeat settings", err)
	}
	st := cur.GetSettings()
	req := &berthv1.SetHeartbeatSettingsRequest{}
	switch name {
	case settingHeartbeatInterval:
		req.Interval = durationpb.New(d)
		if g := st.GetGrace().AsDuration(); d > 0 && g > 2*d && g != st.GetDefaultGrace().AsDuration() {
			req.Grace = st.GetGrace()
		}
	case settingHeartbeatGrace:
		req.Interval, req.Grace = st.GetInterval(), durationpb.New(d)
	}
	if _, err := c.SetHeartbeatSettings(ctx, req); err != nil {
		return s.heartbeatCallError("set "+name, err)
	}
	return nil
}
