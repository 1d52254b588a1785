package githubtest

import (
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
)

// Spec is an extract of an OpenAPI description in the shape of
// testdata/github-api/operations.json (OpenAPI 3 paths, $refs resolved), for
// the stand-ins of other forges' APIs (internal/forgetest), which validate
// requests with the same validator as Server.
type Spec struct{ doc *document }

// ParseSpec decodes an extract; it fails on a schema keyword the validator
// does not implement.
func ParseSpec(data []byte) (*Spec, error) {
	doc, err := parseSpec(data)
	if err != nil {
		return nil, err
	}
	return &Spec{doc: doc}, nil
}

// Source is the extract's "source": where it comes from.
func (s *Spec) Source() string { return s.doc.Source }

// Operation is the operation a request matched.
type Operation struct {
	// ID is the operationId.
	ID string
	// Template is the path as the description writes it.
	Template string
	// Params are the path parameters, unescaped.
	Params map[string]string
	// Body is the decoded JSON body, numbers as json.Number.
	Body map[string]any
	op   *operation
}

// Check validates r against the extract: its escaped path below prefix
// names an operation, path and query parameters are described and of the
// declared type and enum, and the JSON body satisfies the request schema
// (properties the schema does not list included). It reads r's body. It
// returns the operation (nil when none matched) and what is wrong.
func (s *Spec) Check(r *http.Request, prefix string) (*Operation, []string) {
	p := r.URL.EscapedPath()
	if !strings.HasPrefix(p, prefix+"/") {
		return nil, []string{fmt.Sprintf("path outside the API prefix %q", prefix)}
	}
	p = strings.TrimPrefix(p, prefix)
	op, vals, ok := s.doc.route(r.Method, p)
	if !ok {
		if s.doc.pathKnown(p) {
			return nil, []string{"method not described for this path"}
		}
		return nil, []string{"no operation in the description has this path"}
	}
	errs := op.checkParams(vals, r.URL.Query())
	body, bodyErrs := op.checkBody(r)
	return &Operation{ID: op.ID, Template: op.Template, Params: vals, Body: body, op: op}, append(errs, bodyErrs...)
}

// CheckAnswer validates an answer to op: its status is one the operation
// lists, and a 2xx JSON body satisfies the response schema.
func (s *Spec) CheckAnswer(op *Operation, status int, body []byte) []string {
	sch, described := op.op.responses[status]
	switch {
	case !described:
		return []string{fmt.Sprintf("%s answered %d, which the description does not list", op.ID, status)}
	case sch == nil || status/100 != 2:
		return nil
	}
	return checkResponse(sch, body)
}

// checkBody reads r's body and checks it against the operation's request
// schema: none where it takes none, present where required, JSON with
// Content-Type application/json, every property listed.
func (op *operation) checkBody(r *http.Request) (map[string]any, []string) {
	var errs []string
	var decoded map[string]any
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	switch {
	case err != nil:
		errs = append(errs, fmt.Sprintf("reading body: %v", err))
	case len(body) > maxBody:
		errs = append(errs, "body larger than 1 MiB")
	case op.body == nil && len(body) > 0:
		errs = append(errs, "a body where the operation takes none")
	case op.body != nil && len(body) == 0 && op.bodyReq:
		errs = append(errs, "request body missing")
	case op.body != nil && len(body) > 0:
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
			errs = append(errs, fmt.Sprintf("header Content-Type is %q, want application/json", r.Header.Get("Content-Type")))
		}
		v, err := decodeJSON(body)
		if err != nil {
			errs = append(errs, fmt.Sprintf("body is not JSON: %v", err))
			break
		}
		decoded, _ = v.(map[string]any)
		var bodyErrs []string
		op.body.validate(v, "", true, &bodyErrs)
		for _, e := range bodyErrs {
			errs = append(errs, "body "+e)
		}
	}
	return decoded, errs
}
