// Command openapigen adds to the OpenAPI document that protoc-gen-openapiv2
// makes (make generate runs it after buf generate) what the protos cannot
// say: GET /v1/events?wait=D, the front door's long poll of every
// service's events (internal/gateway/poll.go), which shares its path with
// the registration service's event stream. It edits the document in place,
// keeping the generator's order and formatting, so that the committed
// document only changes where the long poll is described.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: openapigen FILE")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "openapigen:", err)
		os.Exit(1)
	}
}

func run(path string) error {
	doc, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	out, err := amend(doc)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return os.WriteFile(path, out, 0o644)
}

// The long poll's description, parameters and answer, as OpenAPI 2.0.
const (
	pollDescription = "With wait, a long poll of every service's events (registration, bundles, heartbeat) " +
		"with one cursor: it answers at once with the events after the cursor, else as soon as one comes, " +
		"else with none after wait; one object {events, cursor} (at most 1000 events). Poll again with the " +
		"answer's cursor. Without wait, the registration service's stream, one {result} or {error} object per line."
	pollParameters = `[
  {"name": "wait", "description": "Makes the request a long poll: how long to wait for an event, a Go duration from 1s to 60s (30s) or whole seconds.", "in": "query", "required": false, "type": "string"},
  {"name": "after", "description": "The cursor to resume after: the previous answer's cursor, service=cursor pairs such as bundles=4,heartbeat=17,registration=12 (or one registration cursor). A service without one starts at its oldest event kept.", "in": "query", "required": false, "type": "string"},
  {"name": "from_now", "description": "With wait: start after each service's newest event instead.", "in": "query", "required": false, "type": "boolean"},
  {"name": "service", "description": "With wait: keep only these services' events (registration, bundles, heartbeat); all by default.", "in": "query", "required": false, "type": "array", "items": {"type": "string"}, "collectionFormat": "multi"},
  {"name": "type", "description": "Keep only events of these types (berthctl watch -h lists them).", "in": "query", "required": false, "type": "array", "items": {"type": "string"}, "collectionFormat": "multi"},
  {"name": "node_id", "description": "Keep only events of these nodes (at most 100).", "in": "query", "required": false, "type": "array", "items": {"type": "string"}, "collectionFormat": "multi"}
]`
	pollAnswerProperties = `{
  "events": {"type": "array", "items": {"$ref": "#/definitions/PollEvent"}, "description": "Long poll: the events, in each service's cursor order."},
  "cursor": {"type": "string", "description": "Long poll: where the next poll resumes (after), service=cursor pairs."}
}`
	pollEventDefinition = `{
  "type": "object",
  "properties": {
    "cursor": {"type": "string", "format": "int64", "description": "cursor orders the events of service."},
    "service": {"type": "string", "description": "service is the log the event comes from: registration, bundles or heartbeat."},
    "type": {"type": "string", "description": "type says what happened, e.g. approved, bundle_updated, suspect, settings_changed."},
    "node_id": {"type": "string", "description": "node_id is the node the event is about; empty for an event of no node."},
    "time": {"type": "string", "format": "date-time"},
    "details": {"type": "object", "additionalProperties": {"type": "string"}, "description": "details carry what the type needs, e.g. actor for who made a change."}
  },
  "description": "PollEvent is one event of a long poll of GET /v1/events?wait=D."
}`
)

// amend adds the long poll to the GET /v1/events operation; a document
// that has it already is returned as it is.
func amend(doc []byte) ([]byte, error) {
	var top object
	if err := json.Unmarshal(doc, &top); err != nil {
		return nil, err
	}
	if bytes.Contains(doc, []byte(`"#/definitions/PollEvent"`)) {
		return doc, nil
	}
	err := top.edit(func(get *object) error {
		if err := get.set("description", pollDescription); err != nil {
			return err
		}
		var params []json.RawMessage
		if err := json.Unmarshal(get.get("parameters"), &params); err != nil {
			return fmt.Errorf("parameters: %w", err)
		}
		var extra []json.RawMessage
		if err := json.Unmarshal([]byte(pollParameters), &extra); err != nil {
			return err
		}
		if err := get.set("parameters", append(params, extra...)); err != nil {
			return err
		}
		return get.edit(func(schema *object) error {
			return schema.edit(func(props *object) error {
				var add object
				if err := json.Unmarshal([]byte(pollAnswerProperties), &add); err != nil {
					return err
				}
				props.members = append(props.members, add.members...)
				return nil
			}, "properties")
		}, "responses", "200", "schema")
	}, "paths", "/v1/events", "get")
	if err != nil {
		return nil, err
	}
	err = top.edit(func(defs *object) error {
		defs.insertSorted("PollEvent", json.RawMessage(pollEventDefinition))
		return nil
	}, "definitions")
	if err != nil {
		return nil, err
	}
	compact, err := json.Marshal(top)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, compact, "", "  "); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// object is a JSON object that keeps its members' order, and their values
// as they were written.
type object struct{ members []member }

type member struct {
	key   string
	value json.RawMessage
}

func (o *object) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return errors.New("not an object")
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return err
		}
		o.members = append(o.members, member{key: t.(string), value: v})
	}
	return nil
}

func (o object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range o.members {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(m.key)
		b.Write(k)
		b.WriteByte(':')
		b.Write(m.value)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func (o *object) get(key string) json.RawMessage {
	for _, m := range o.members {
		if m.key == key {
			return m.value
		}
	}
	return nil
}

// set replaces key's value, or adds it at the end.
func (o *object) set(key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	for i := range o.members {
		if o.members[i].key == key {
			o.members[i].value = raw
			return nil
		}
	}
	o.members = append(o.members, member{key: key, value: raw})
	return nil
}

// insertSorted adds key before the first member whose key sorts after it.
func (o *object) insertSorted(key string, v json.RawMessage) {
	i := 0
	for i < len(o.members) && o.members[i].key < key {
		i++
	}
	o.members = append(o.members[:i], append([]member{{key: key, value: v}}, o.members[i:]...)...)
}

// edit runs fn on the object at path and stores it back.
func (o *object) edit(fn func(*object) error, path ...string) error {
	if len(path) == 0 {
		return fn(o)
	}
	raw := o.get(path[0])
	if raw == nil {
		return fmt.Errorf("no %q", path[0])
	}
	var sub object
	if err := json.Unmarshal(raw, &sub); err != nil {
		return fmt.Errorf("%s: %w", path[0], err)
	}
	if err := sub.edit(fn, path[1:]...); err != nil {
		return fmt.Errorf("%s: %w", path[0], err)
	}
	return o.set(path[0], sub)
}
