package githubtest

import (
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// schema is the subset of JSON Schema (OpenAPI 3.0 flavour) that GitHub's
// description of the operations in operations.json uses. Decoding fails on any
// keyword outside that subset, so that a newer extract cannot be validated
// more loosely than it says without anyone noticing.
//
// Why hand-written, and not kin-openapi's openapi3filter (v0.153.0, tried on
// this extract and on the 15-path one in the project's shared fixtures): the
// library refuses nothing that this validator accepts, and accepts what a
// stand-in for GitHub must refuse. It has no option to reject properties a
// schema does not list, so a request body {"ref":"main","enviroment":"x"}
// (a typo GitHub would silently ignore) passes; nor query parameters the
// operation does not describe (?shaa=...), nor one given twice, nor JSON with
// trailing data ({"ref":"main"} {}), nor integers written 1.0 or 1e3 (it
// decodes to float64). Its routers (gorillamux and legacy) find no operation
// for GET /repos/o/r/commits/heads/main/check-runs, a ref with a slash that
// GitHub serves (x-multi-segment here), and the legacy one refuses GitHub's
// own description unless example validation is turned off (an example of
// GET /pulls breaks its schema). What it refuses (enum, type, nullable,
// oneOf, required, missing or non-JSON body, Content-Type) this validator
// refuses too. It would also bring kin-openapi and five more modules into
// go.mod, for tests only.
type schema struct {
	Type       string
	Format     string
	Nullable   bool
	Enum       []any
	Properties map[string]*schema
	Required   []string
	Items      *schema
	MaxLength  int // -1: none
	OneOf      []*schema
	AnyOf      []*schema
	AllOf      []*schema
	// Additional is the schema of properties not in Properties; nil with
	// ClosedSet false means additionalProperties was not given.
	Additional *schema
	// AllowAdditional is additionalProperties: true; ClosedSet is false.
	AllowAdditional bool
	ClosedSet       bool
}

// ignoredKeywords are annotations that do not constrain a value.
var ignoredKeywords = map[string]bool{
	"title": true, "description": true, "example": true, "examples": true,
	"default": true, "readOnly": true, "writeOnly": true, "deprecated": true,
}

// UnmarshalJSON decodes a schema and rejects keywords the validator does not implement.
func (s *schema) UnmarshalJSON(data []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return fmt.Errorf("decoding schema: %w", err)
	}
	*s = schema{MaxLength: -1}
	for key, val := range raw {
		var err error
		switch key {
		case "type":
			err = json.Unmarshal(val, &s.Type)
		case "format":
			err = json.Unmarshal(val, &s.Format)
		case "nullable":
			err = json.Unmarshal(val, &s.Nullable)
		case "enum":
			err = json.Unmarshal(val, &s.Enum)
		case "properties":
			err = json.Unmarshal(val, &s.Properties)
		case "required":
			err = json.Unmarshal(val, &s.Required)
		case "items":
			err = json.Unmarshal(val, &s.Items)
		case "maxLength":
			err = json.Unmarshal(val, &s.MaxLength)
		case "oneOf":
			err = json.Unmarshal(val, &s.OneOf)
		case "anyOf":
			err = json.Unmarshal(val, &s.AnyOf)
		case "allOf":
			err = json.Unmarshal(val, &s.AllOf)
		case "additionalProperties":
			var b bool
			if json.Unmarshal(val, &b) == nil {
				s.AllowAdditional, s.ClosedSet = b, !b
			} else {
				err = json.Unmarshal(val, &s.Additional)
			}
		default:
			if !ignoredKeywords[key] && !strings.HasPrefix(key, "x-") {
				return fmt.Errorf("schema keyword %q is not supported by githubtest's validator", key)
			}
		}
		if err != nil {
			return fmt.Errorf("decoding schema keyword %q: %w", key, err)
		}
	}
	switch s.Type {
	case "", "object", "array", "string", "integer", "number", "boolean":
	default:
		return fmt.Errorf("schema type %q is not supported", s.Type)
	}
	return nil
}

// validate appends to errs a line for each way v (decoded with UseNumber)
// breaks s. at names the place in the document, as a JSON pointer. strict
// rejects object properties that s does not list, unless s says
// additionalProperties: true: GitHub ignores unknown request properties, but a
// client that sends one has a typo or our idea of the API is wrong.
func (s *schema) validate(v any, at string, strict bool, errs *[]string) {
	fail := func(format string, args ...any) {
		*errs = append(*errs, fmt.Sprintf("%s: %s", pointer(at), fmt.Sprintf(format, args...)))
	}
	if v == nil {
		if s.Nullable {
			return
		}
		if s.Type != "" {
			fail("null where %s is required", s.Type)
			return
		}
		// Without a type, the composition keywords and enum decide.
	}
	for _, sub := range s.AllOf {
		sub.validate(v, at, strict, errs)
	}
	if len(s.OneOf) > 0 {
		n, why := matches(s.OneOf, v, at, strict)
		if n != 1 {
			fail("matches %d of oneOf's %d alternatives, not exactly one (%s)", n, len(s.OneOf), why)
		}
	}
	if len(s.AnyOf) > 0 {
		if n, why := matches(s.AnyOf, v, at, strict); n == 0 {
			fail("matches none of anyOf's alternatives (%s)", why)
		}
	}
	switch s.Type {
	case "object":
		obj, ok := v.(map[string]any)
		if !ok {
			fail("%s where an object is required", kind(v))
			return
		}
		s.validateObject(obj, at, strict, errs)
	case "array":
		arr, ok := v.([]any)
		if !ok {
			fail("%s where an array is required", kind(v))
			return
		}
		if s.Items != nil {
			for i, item := range arr {
				s.Items.validate(item, fmt.Sprintf("%s/%d", at, i), strict, errs)
			}
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			fail("%s where a string is required", kind(v))
			return
		}
		if s.MaxLength >= 0 && utf8.RuneCountInString(str) > s.MaxLength {
			fail("%d characters, more than maxLength %d", utf8.RuneCountInString(str), s.MaxLength)
		}
		if err := checkFormat(s.Format, str); err != nil {
			fail("%v", err)
		}
	case "integer":
		n, ok := v.(json.Number)
		if !ok {
			fail("%s where an integer is required", kind(v))
			return
		}
		if _, err := n.Int64(); err != nil {
			fail("%s is not an integer", n)
		}
	case "number":
		if _, ok := v.(json.Number); !ok {
			fail("%s where a number is required", kind(v))
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			fail("%s where a boolean is required", kind(v))
		}
	}
	if len(s.Enum) > 0 {
		found := false
		for _, e := range s.Enum {
			found = found || fmt.Sprint(e) == fmt.Sprint(v)
		}
		if !found {
			fail("%v is not one of %v", v, s.Enum)
		}
	}
}

// validateObject checks required, listed and additional properties.
func (s *schema) validateObject(obj map[string]any, at string, strict bool, errs *[]string) {
	for _, name := range s.Required {
		if _, ok := obj[name]; !ok {
			*errs = append(*errs, fmt.Sprintf("%s: required property %q missing", pointer(at), name))
		}
	}
	names := make([]string, 0, len(obj))
	for name := range obj {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		val := obj[name]
		if p, ok := s.Properties[name]; ok {
			p.validate(val, at+"/"+name, strict, errs)
			continue
		}
		switch {
		case s.Additional != nil:
			s.Additional.validate(val, at+"/"+name, strict, errs)
		case s.AllowAdditional:
		case s.ClosedSet || strict:
			*errs = append(*errs, fmt.Sprintf("%s: property %q is not in the schema", pointer(at), name))
		}
	}
}

// matches counts the alternatives v satisfies and says why the others fail.
func matches(alts []*schema, v any, at string, strict bool) (int, string) {
	n := 0
	var why []string
	for _, alt := range alts {
		var sub []string
		alt.validate(v, at, strict, &sub)
		if len(sub) == 0 {
			n++
		} else {
			why = append(why, sub[0])
		}
	}
	return n, strings.Join(why, "; ")
}

// checkFormat checks the formats the extract uses; int64 and email are
// left to the type check. An empty uri passes: GitHub sends "" for a URL
// not set (target_url, log_url, environment_url default to "").
func checkFormat(format, s string) error {
	switch format {
	case "date-time":
		if _, err := time.Parse(time.RFC3339, s); err != nil {
			return fmt.Errorf("%q is not a date-time", s)
		}
	case "uri":
		if s == "" {
			return nil
		}
		u, err := url.Parse(s)
		if err != nil || !u.IsAbs() {
			return fmt.Errorf("%q is not an absolute URI", s)
		}
	}
	return nil
}

func kind(v any) string {
	switch v.(type) {
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	case string:
		return "a string"
	case json.Number, float64:
		return "a number"
	case bool:
		return "a boolean"
	}
	return fmt.Sprintf("%T", v)
}

func pointer(at string) string {
	if at == "" {
		return "/"
	}
	return at
}

// example returns a small value that satisfies s: every required property,
// the first enum value or oneOf alternative, formats honoured. The server
// overlays its model's fields on it, so that its answers carry every field
// GitHub's description says is always there.
func (s *schema) example() any {
	if len(s.AllOf) > 0 {
		out := map[string]any{}
		for _, sub := range s.AllOf {
			if m, ok := sub.example().(map[string]any); ok {
				overlay(out, m)
			}
		}
		return out
	}
	if len(s.OneOf) > 0 {
		return s.OneOf[0].example()
	}
	if len(s.AnyOf) > 0 {
		return s.AnyOf[0].example()
	}
	if len(s.Enum) > 0 {
		return s.Enum[0]
	}
	switch s.Type {
	case "object":
		out := map[string]any{}
		for _, name := range s.Required {
			if p, ok := s.Properties[name]; ok {
				out[name] = p.example()
			} else {
				out[name] = "x"
			}
		}
		return out
	case "array":
		return []any{}
	case "string":
		switch s.Format {
		case "date-time":
			return "2025-01-01T00:00:00Z"
		case "uri":
			return "https://github.example/x"
		case "email":
			return "octocat@github.example"
		}
		return "x"
	case "integer", "number":
		return json.Number("1")
	case "boolean":
		return false
	}
	return nil
}

// overlay copies src into dst, merging nested objects and replacing everything else.
func overlay(dst, src map[string]any) {
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				overlay(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
}

// normalize turns numbers into json.Number by a round trip through JSON, so
// that values the model builds validate like values decoded from the wire.
func normalize(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return decodeJSON(b)
}

func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("trailing data after the JSON value")
	}
	return v, nil
}
