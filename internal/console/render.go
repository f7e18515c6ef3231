package console

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// pageNames are the templates/NAME.html files, each rendered inside
// layout.html.
var pageNames = []string{"signin", "error", "pending", "fleet", "node", "events", "settings"}

var funcs = template.FuncMap{
	"ts":         formatTime,
	"dur":        formatDuration,
	"nodeStatus": nodeStatus,
	"liveness":   liveness,
	"reported":   reportedStatus,
	"bundleState": func(s berthv1.BundleState) string {
		return strings.ToLower(strings.TrimPrefix(s.String(), "BUNDLE_STATE_"))
	},
	"join":       strings.Join,
	"list":       func(s ...string) []string { return s },
	"eventTable": eventTable,
}

func parsePages() (map[string]*template.Template, error) {
	out := map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console template %s: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}

// view is what every page template gets.
type view struct {
	Title string
	// Nav is the section the page belongs to, for the navigation's
	// aria-current.
	Nav string
	// Principal and CSRF are empty when nobody is signed in.
	Principal *Principal
	CSRF      string
	// Done is a short note of the action that led here.
	Done string
	Data any
}

// CanAct and CanAdminister say which controls to show.
func (v view) CanAct() bool        { return v.Principal != nil && v.Principal.CanAct() }
func (v view) CanAdminister() bool { return v.Principal != nil && v.Principal.CanAdminister() }

var titles = map[string]string{
	"signin": "Sign in", "error": "Error", "pending": "Pending approval", "fleet": "Fleet",
	"node": "Node", "events": "Events", "settings": "Settings",
}

// render writes a page. It renders into a buffer first so that a
// template error is a clean 500, never half a page.
func (s *Console) render(w http.ResponseWriter, r *http.Request, code int, name string, ss *session, data any) {
	v := view{Title: titles[name], Nav: name, Data: data, Done: doneNote(r)}
	if ss != nil {
		v.Principal, v.CSRF = &ss.principal, ss.csrf
	}
	var buf bytes.Buffer
	if err := s.pages[name].Execute(&buf, v); err != nil {
		s.c.Logger.Error("console template failed", "page", name, "error", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	buf.WriteTo(w)
}

type errorData struct {
	Code    int
	Message string
	Back    string
}

// fail shows an error page: the server's own message for a failed call,
// so that nothing fails silently. Scripts asking for JSON get JSON.
func (s *Console) fail(w http.ResponseWriter, r *http.Request, ss *session, code int, msg string) {
	if strings.Contains(r.Header.Get("Accept"), "application/json") || r.Header.Get("Accept") == "text/event-stream" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		fmt.Fprintf(w, "{\"error\":%q}\n", msg)
		return
	}
	s.render(w, r, code, "error", ss, errorData{Code: code, Message: msg, Back: backTo(r)})
}

// doneNotes are the notes an action's redirect may ask for (?done=KEY).
var doneNotes = map[string]string{
	"approved": "Node approved.", "rejected": "Node rejected.", "revoked": "Node revoked.",
	"replacement":     "Replacement allowed: the next new board with this node's hardware takes its place.",
	"bundle-approved": "Bundle version approved.", "bundle-reset": "Bundle reset.",
	"settings": "Settings saved.", "labels": "Labels saved.",
}

func doneNote(r *http.Request) string { return doneNotes[r.URL.Query().Get("done")] }

// backTo is the console page a failed action should offer to return to:
// the form's own "back" field when it is a console path.
func backTo(r *http.Request) string {
	b := r.PostFormValue("back")
	if strings.HasPrefix(b, "/ui/") && !strings.HasPrefix(b, "//") && !strings.ContainsAny(b, "\\\r\n") {
		return b
	}
	return "/ui/fleet"
}

func formatTime(t *timestamppb.Timestamp) string {
	if t == nil || !t.IsValid() || t.AsTime().IsZero() {
		return "—"
	}
	return t.AsTime().UTC().Format("2006-01-02 15:04:05Z")
}

func formatDuration(d *durationpb.Duration) string {
	if d == nil {
		return "—"
	}
	return d.AsDuration().Round(time.Second).String()
}

func nodeStatus(s berthv1.NodeStatus) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "NODE_STATUS_"))
}

func liveness(s berthv1.LivenessState) string {
	if s == berthv1.LivenessState_LIVENESS_STATE_UNSPECIFIED {
		return "unknown"
	}
	return strings.ToLower(strings.TrimPrefix(s.String(), "LIVENESS_STATE_"))
}

func reportedStatus(s berthv1.ReportedStatus) string {
	if s == berthv1.ReportedStatus_REPORTED_STATUS_UNSPECIFIED {
		return "—"
	}
	return strings.ToLower(strings.TrimPrefix(s.String(), "REPORTED_STATUS_"))
}
