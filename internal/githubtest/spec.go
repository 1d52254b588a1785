package githubtest

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// operationsJSON is the extract of GitHub's OpenAPI description that the
// server validates against; testdata/github-api/README.md says where it comes from.
//
//go:embed testdata/github-api/operations.json
var operationsJSON []byte

// operation is one method and path of the extract.
type operation struct {
	ID       string
	Method   string
	Template string   // "/repos/{owner}/{repo}/deployments"
	segments []string // Template split on "/"
	params   map[string]parameter
	body     *schema // nil: no request body
	bodyReq  bool
	// responses maps a status code to its JSON schema (nil: no body described).
	responses map[int]*schema
}

type parameter struct {
	Name         string
	In           string // "path" or "query"
	Required     bool
	Schema       *schema
	MultiSegment bool
}

type document struct {
	Source string
	ops    []*operation
}

var (
	specOnce sync.Once
	spec     *document
	specErr  error
)

// loadSpec decodes the embedded extract once.
func loadSpec() (*document, error) {
	specOnce.Do(func() { spec, specErr = parseSpec(operationsJSON) })
	return spec, specErr
}

func parseSpec(data []byte) (*document, error) {
	var raw struct {
		Source string `json:"source"`
		Paths  map[string]map[string]struct {
			OperationID string `json:"operationId"`
			Parameters  []struct {
				Name         string  `json:"name"`
				In           string  `json:"in"`
				Required     bool    `json:"required"`
				Schema       *schema `json:"schema"`
				MultiSegment bool    `json:"x-multi-segment"`
			} `json:"parameters"`
			RequestBody *struct {
				Required bool `json:"required"`
				Content  map[string]struct {
					Schema *schema `json:"schema"`
				} `json:"content"`
			} `json:"requestBody"`
			Responses map[string]struct {
				Content map[string]struct {
					Schema *schema `json:"schema"`
				} `json:"content"`
			} `json:"responses"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("decoding operations.json: %w", err)
	}
	doc := &document{Source: raw.Source}
	for tmpl, methods := range raw.Paths {
		for method, op := range methods {
			o := &operation{
				ID:        op.OperationID,
				Method:    strings.ToUpper(method),
				Template:  tmpl,
				segments:  strings.Split(strings.Trim(tmpl, "/"), "/"),
				params:    map[string]parameter{},
				responses: map[int]*schema{},
			}
			for _, p := range op.Parameters {
				if p.In != "path" && p.In != "query" {
					return nil, fmt.Errorf("%s %s: parameter %q in %q is not supported", o.Method, tmpl, p.Name, p.In)
				}
				o.params[p.Name] = parameter{Name: p.Name, In: p.In, Required: p.Required || p.In == "path", Schema: p.Schema, MultiSegment: p.MultiSegment}
			}
			if rb := op.RequestBody; rb != nil {
				c, ok := rb.Content["application/json"]
				if !ok || len(rb.Content) != 1 {
					return nil, fmt.Errorf("%s %s: only application/json request bodies are supported", o.Method, tmpl)
				}
				o.body, o.bodyReq = c.Schema, rb.Required
			}
			for code, r := range op.Responses {
				n, err := strconv.Atoi(code)
				if err != nil {
					return nil, fmt.Errorf("%s %s: response %q: %w", o.Method, tmpl, code, err)
				}
				o.responses[n] = nil
				if c, ok := r.Content["application/json"]; ok {
					o.responses[n] = c.Schema
				}
			}
			doc.ops = append(doc.ops, o)
		}
	}
	sort.Slice(doc.ops, func(i, j int) bool {
		if doc.ops[i].Template != doc.ops[j].Template {
			return doc.ops[i].Template < doc.ops[j].Template
		}
		return doc.ops[i].Method < doc.ops[j].Method
	})
	return doc, nil
}

// route finds the operation for method and an escaped path (without the
// server's prefix) and returns its path parameters, unescaped.
func (d *document) route(method, escapedPath string) (*operation, map[string]string, bool) {
	segs := strings.Split(strings.Trim(escapedPath, "/"), "/")
	for _, op := range d.ops {
		if op.Method != method {
			continue
		}
		vals := map[string]string{}
		if op.match(op.segments, segs, vals) {
			return op, vals, true
		}
	}
	return nil, nil, false
}

// pathKnown reports whether any operation, whatever its method, has this path.
func (d *document) pathKnown(escapedPath string) bool {
	segs := strings.Split(strings.Trim(escapedPath, "/"), "/")
	for _, op := range d.ops {
		if op.match(op.segments, segs, map[string]string{}) {
			return true
		}
	}
	return false
}

// match matches template segments against path segments; a parameter marked
// x-multi-segment (a ref such as heads/main) may take several.
func (op *operation) match(tmpl, segs []string, vals map[string]string) bool {
	if len(tmpl) == 0 {
		return len(segs) == 0
	}
	t := tmpl[0]
	if !strings.HasPrefix(t, "{") {
		return len(segs) > 0 && segs[0] == t && op.match(tmpl[1:], segs[1:], vals)
	}
	name := strings.Trim(t, "{}")
	maxTake := 1
	if op.params[name].MultiSegment {
		maxTake = len(segs) - len(tmpl) + 1
	}
	for take := 1; take <= maxTake && take <= len(segs); take++ {
		raw := strings.Join(segs[:take], "/")
		val, err := url.PathUnescape(raw)
		if err != nil || val == "" {
			return false
		}
		if op.match(tmpl[1:], segs[take:], vals) {
			vals[name] = val
			return true
		}
	}
	return false
}

// checkParams validates path and query parameters: required ones present,
// values of the declared type and enum, no query parameter the operation
// does not describe.
func (op *operation) checkParams(pathVals map[string]string, query url.Values) []string {
	var errs []string
	names := make([]string, 0, len(op.params))
	for name := range op.params {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		p := op.params[name]
		var vals []string
		if p.In == "path" {
			if v, ok := pathVals[name]; ok {
				vals = []string{v}
			}
		} else {
			vals = query[name]
		}
		if len(vals) == 0 {
			if p.Required {
				errs = append(errs, fmt.Sprintf("%s parameter %q missing", p.In, name))
			}
			continue
		}
		if len(vals) > 1 {
			errs = append(errs, fmt.Sprintf("%s parameter %q given %d times", p.In, name, len(vals)))
		}
		if err := checkParamValue(p.Schema, vals[0]); err != nil {
			errs = append(errs, fmt.Sprintf("%s parameter %q: %v", p.In, name, err))
		}
	}
	for name := range query {
		if p, ok := op.params[name]; !ok || p.In != "query" {
			errs = append(errs, fmt.Sprintf("query parameter %q is not described", name))
		}
	}
	sort.Strings(errs)
	return errs
}

func checkParamValue(s *schema, v string) error {
	if s == nil {
		return nil
	}
	var typed any = v
	switch s.Type {
	case "integer":
		if _, err := strconv.ParseInt(v, 10, 64); err != nil {
			return fmt.Errorf("%q is not an integer", v)
		}
		typed = json.Number(v)
	case "boolean":
		if v != "true" && v != "false" {
			return fmt.Errorf("%q is not a boolean", v)
		}
		typed = v == "true"
	}
	var errs []string
	s.validate(typed, "", false, &errs)
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}
