package testkit

import (
	"bytes"
	"encoding/json"
	"strings"
)

// PushFields are the fields of a push delivery that decisions read.
type PushFields struct {
	Ref           string
	After         string
	Deleted       bool
	Repository    string // repository.full_name
	DefaultBranch string // repository.default_branch
}

// DecodePush decodes doc with encoding/json into PushFields: the oracle
// that the streaming decoder of package delivery, and the handler reading
// deliveries with it, are checked against. typeOK reports that encoding/json
// found no type error and that no string is longer than maxLen bytes
// (after: maxAfter). exact is false when a key of the document matches a
// field only case-insensitively: encoding/json takes it, the streaming
// decoder (like GitHub, which writes keys in lower case) does not.
func DecodePush(doc []byte, maxLen, maxAfter int) (p PushFields, typeOK, exact bool) {
	var v struct {
		Ref        string `json:"ref"`
		After      string `json:"after"`
		Deleted    bool   `json:"deleted"`
		Repository struct {
			FullName      string `json:"full_name"`
			DefaultBranch string `json:"default_branch"`
		} `json:"repository"`
	}
	err := json.Unmarshal(doc, &v)
	p = PushFields{Ref: v.Ref, After: v.After, Deleted: v.Deleted,
		Repository: v.Repository.FullName, DefaultBranch: v.Repository.DefaultBranch}
	typeOK = err == nil && len(p.Ref) <= maxLen && len(p.After) <= maxAfter &&
		len(p.Repository) <= maxLen && len(p.DefaultBranch) <= maxLen

	exact = true
	dec := json.NewDecoder(bytes.NewReader(doc))
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		if k, ok := tok.(string); ok {
			for _, name := range []string{"ref", "after", "deleted", "repository", "full_name", "default_branch"} {
				if k != name && strings.EqualFold(k, name) {
					exact = false
				}
			}
		}
	}
	return p, typeOK, exact
}
