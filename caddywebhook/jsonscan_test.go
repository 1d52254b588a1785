package caddywebhook

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"
)

// scan writes doc to a fresh payloadSchema scanner in pieces of step bytes
// (step 0: all at once), as a slow client would send it.
func scan(doc string, step int) *jsonScanner {
	s := newJSONScanner(payloadSchema)
	writeInSteps(s, []byte(doc), step)
	return s
}

// writeInSteps writes b to w in pieces of step bytes (step 0: all at once).
func writeInSteps(w io.Writer, b []byte, step int) {
	if step == 0 {
		step = len(b) + 1
	}
	for len(b) > 0 {
		n := min(step, len(b))
		w.Write(b[:n])
		b = b[n:]
	}
}

// fieldsOf returns what a scanner kept, as encoding/json would decode it.
func fieldsOf(s *jsonScanner) payload {
	var p payload
	p.Ref = s.String(fieldRef)
	p.Deleted = s.Bool(fieldDeleted)
	p.Repository.FullName = s.String(fieldFullName)
	p.Repository.DefaultBranch = s.String(fieldDefaultBranch)
	return p
}

// unmarshalStruct decodes doc with encoding/json into a struct, as the
// handler did before it streamed, and reports whether that found no type
// error. exact is false when a key of the document matches a field only
// case-insensitively: encoding/json takes it, the scanner does not.
func unmarshalStruct(doc []byte) (p payload, typeOK, exact bool) {
	var v struct {
		Ref        string `json:"ref"`
		Deleted    bool   `json:"deleted"`
		Repository struct {
			FullName      string `json:"full_name"`
			DefaultBranch string `json:"default_branch"`
		} `json:"repository"`
	}
	err := json.Unmarshal(doc, &v)
	p.Ref, p.Deleted = v.Ref, v.Deleted
	p.Repository.FullName, p.Repository.DefaultBranch = v.Repository.FullName, v.Repository.DefaultBranch
	typeOK = err == nil && len(p.Ref) <= maxFieldLen &&
		len(p.Repository.FullName) <= maxFieldLen && len(p.Repository.DefaultBranch) <= maxFieldLen

	exact = true
	dec := json.NewDecoder(bytes.NewReader(doc))
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		if k, ok := tok.(string); ok {
			for _, name := range []string{"ref", "deleted", "repository", "full_name", "default_branch"} {
				if k != name && strings.EqualFold(k, name) {
					exact = false
				}
			}
		}
	}
	return p, typeOK, exact
}

func TestJSONScanner(t *testing.T) {
	for _, c := range []struct {
		name    string
		doc     string
		syntax  string // in the syntax error; "" when valid
		typeErr string // in the type error; "" when none
		want    payload
	}{
		{name: "push", doc: `{"ref":"refs/heads/main","deleted":false,"repository":{"full_name":"o/r","default_branch":"main"}}`,
			want: payload{Ref: "refs/heads/main", Repository: struct{ FullName, DefaultBranch string }{"o/r", "main"}}},
		{name: "deleted", doc: `{"deleted":true}`, want: payload{Deleted: true}},
		{name: "white space everywhere", doc: " \t\r\n{ \"ref\" : \"x\" , \"deleted\" :\ttrue\n}\n ", want: payload{Ref: "x", Deleted: true}},
		{name: "the last of two wins", doc: `{"ref":"a","ref":"b"}`, want: payload{Ref: "b"}},
		{name: "null keeps the value", doc: `{"ref":"a","ref":null,"deleted":null,"repository":null}`, want: payload{Ref: "a"}},
		{name: "objects merge", doc: `{"repository":{"full_name":"a"},"repository":{"default_branch":"b"}}`,
			want: payload{Repository: struct{ FullName, DefaultBranch string }{"a", "b"}}},
		{name: "nested fields of the same name are not the field", doc: `{"head_commit":{"ref":"x","deleted":true},"commits":[{"ref":"y"}],"repository":{"owner":{"full_name":"z"}}}`},
		{name: "fields in an array are not the field", doc: `{"repository":[{"full_name":"z"}]}`, typeErr: "repository is an array"},
		{name: "escapes", doc: `{"ref":"a\"\\\/\b\f\n\r\t\u00e9\u20ac"}`, want: payload{Ref: "a\"\\/\b\f\n\r\té€"}},
		{name: "escaped key", doc: `{"r\u0065f":"x"}`, want: payload{Ref: "x"}},
		{name: "key in another case", doc: `{"Ref":"x"}`},
		{name: "surrogate pair", doc: `{"ref":"\ud83d\ude00"}`, want: payload{Ref: "😀"}},
		{name: "lone high surrogate", doc: `{"ref":"\ud83dx"}`, want: payload{Ref: "\ufffdx"}},
		{name: "high surrogate then escape", doc: `{"ref":"\ud83d\n"}`, want: payload{Ref: "\ufffd\n"}},
		{name: "two high surrogates", doc: `{"ref":"\ud83d\ud83d\ude00"}`, want: payload{Ref: "\ufffd😀"}},
		{name: "lone low surrogate", doc: `{"ref":"\ude00"}`, want: payload{Ref: "\ufffd"}},
		{name: "invalid UTF-8", doc: "{\"ref\":\"a\xff\xfeb\"}", want: payload{Ref: "a\ufffd\ufffdb"}},
		{name: "numbers", doc: `[0,-0,1.5,-2e10,3E+2,4e-2,10,0.0]`, typeErr: "the document is an array"},
		{name: "top-level number", doc: `12`, typeErr: "the document is a number"},
		{name: "top-level null", doc: `null`},
		{name: "top-level string", doc: `"x"`, typeErr: "the document is a string"},
		{name: "ref a number", doc: `{"ref":1}`, typeErr: "ref is a number, not a string"},
		{name: "deleted a string", doc: `{"deleted":"yes"}`, typeErr: "deleted is a string, not a boolean"},
		{name: "repository a string", doc: `{"repository":"o/r"}`, typeErr: "repository is a string, not an object"},
		{name: "full_name an object", doc: `{"repository":{"full_name":{"ref":"x"}}}`, typeErr: "repository.full_name is an object"},
		{name: "too long a ref", doc: `{"ref":"` + strings.Repeat("a", maxFieldLen+1) + `"}`, typeErr: "ref is longer than 1024 bytes"},
		{name: "long unrelated string", doc: `{"zen":"` + strings.Repeat("a", 100000) + `","ref":"r"}`, want: payload{Ref: "r"}},
		{name: "deep", doc: strings.Repeat("[", maxNesting) + strings.Repeat("]", maxNesting), typeErr: "the document is an array"},
		{name: "too deep", doc: strings.Repeat("[", maxNesting+1) + strings.Repeat("]", maxNesting+1), syntax: "exceeded max depth"},

		{name: "empty", doc: ``, syntax: "unexpected end of JSON input"},
		{name: "cut short", doc: `{"ref":`, syntax: "unexpected end of JSON input"},
		{name: "cut in a string", doc: `{"ref":"ab`, syntax: "unexpected end of JSON input"},
		{name: "cut in a number", doc: `[1`, syntax: "unexpected end of JSON input"},
		{name: "two values", doc: `{} {}`, syntax: "after top-level value"},
		{name: "trailing comma", doc: `{"a":1,}`, syntax: "looking for beginning of object key string"},
		{name: "leading zero", doc: `01`, syntax: "after top-level value"},
		{name: "bare minus", doc: `-`, syntax: "unexpected end"},
		{name: "bad exponent", doc: `1e`, syntax: "unexpected end"},
		{name: "dot without digits", doc: `1.e5`, syntax: "after decimal point"},
		{name: "control character in a string", doc: "\"a\nb\"", syntax: "in string literal"},
		{name: "bad escape", doc: `"\x"`, syntax: "in string escape code"},
		{name: "bad unicode escape", doc: `"\u12g4"`, syntax: "hexadecimal character escape"},
		{name: "misspelled literal", doc: `[tru]`, syntax: "in literal true"},
		{name: "mismatched brackets", doc: `[}`, syntax: "looking for beginning of value"},
		{name: "mismatched close", doc: `{"a":[1}`, syntax: "after array element"},
		{name: "missing colon", doc: `{"a" 1}`, syntax: "after object key"},
		{name: "unquoted key", doc: `{a:1}`, syntax: "looking for beginning of object key string"},
		{name: "XML", doc: `<xml/>`, syntax: "looking for beginning of value"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if valid := json.Valid([]byte(c.doc)); valid != (c.syntax == "") {
				t.Fatalf("the case is wrong: json.Valid = %v", valid)
			}
			for _, step := range []int{0, 1, 3, 7} {
				s := scan(c.doc, step)
				err := s.Finish()
				if c.syntax == "" && err != nil || c.syntax != "" && (err == nil || !strings.Contains(err.Error(), c.syntax)) {
					t.Fatalf("step %d: Finish() = %v, want %q", step, err, c.syntax)
				}
				if c.syntax != "" {
					continue
				}
				te := s.TypeErr()
				if c.typeErr == "" && te != nil || c.typeErr != "" && (te == nil || !strings.Contains(te.Error(), c.typeErr)) {
					t.Errorf("step %d: TypeErr() = %v, want %q", step, te, c.typeErr)
				}
				if c.typeErr == "" {
					if got := fieldsOf(s); got != c.want {
						t.Errorf("step %d: fields %+v, want %+v", step, got, c.want)
					}
				}
			}
			if c.syntax != "" {
				return
			}
			want, typeOK, exact := unmarshalStruct([]byte(c.doc))
			if exact && (typeOK != (c.typeErr == "") || typeOK && want != c.want) {
				t.Errorf("encoding/json disagrees with the case: %+v, type ok %v", want, typeOK)
			}
		})
	}
}

// TestJSONScannerReset: a pooled scanner keeps nothing of its last document.
func TestJSONScannerReset(t *testing.T) {
	s := scan(`{"ref":"a","deleted":true,"repository":{"full_name":"x"}}`, 0)
	s.reset()
	s.Write([]byte(`{"repository":{"default_branch":"b"}}`))
	if err := s.Finish(); err != nil {
		t.Fatal(err)
	}
	want := payload{Repository: struct{ FullName, DefaultBranch string }{"", "b"}}
	if got := fieldsOf(s); got != want {
		t.Errorf("fields %+v after reset, want %+v", got, want)
	}
}

// FuzzJSONScanner: the scanner agrees with encoding/json on whether a
// document is JSON, and on the fields it keeps, however it is cut.
func FuzzJSONScanner(f *testing.F) {
	for _, name := range []string{"push-branch.json", "push-branch-deleted.json", "ping-repo.json", "issues-opened.json"} {
		f.Add(fixture(f, name), uint8(0))
	}
	for _, doc := range []string{`{"ref":"\ud83d\ude00","repository":{"full_name":"a"}}`, `[1,2.5e3,{"a":null}]`, "\"\xff\"", `{"ref":1}`} {
		f.Add([]byte(doc), uint8(3))
	}
	f.Fuzz(func(t *testing.T, doc []byte, step uint8) {
		s := scan(string(doc), int(step))
		err := s.Finish()
		if valid := json.Valid(doc); valid != (err == nil) {
			t.Fatalf("json.Valid = %v, scanner: %v", valid, err)
		}
		if err != nil {
			return
		}
		want, typeOK, exact := unmarshalStruct(doc)
		if !exact {
			t.Skip("a key matches a field only case-insensitively")
		}
		if te := s.TypeErr(); typeOK != (te == nil) {
			t.Fatalf("encoding/json type ok %v, scanner: %v", typeOK, te)
		}
		if got := fieldsOf(s); typeOK && got != want {
			t.Fatalf("fields %+v, encoding/json %+v", got, want)
		}
	})
}
