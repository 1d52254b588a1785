package delivery

import (
	"encoding/json"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/testkit"
)

// scan writes doc to a fresh pushSchema scanner in pieces of step bytes
// (step 0: all at once), as a slow client would send it.
func scan(doc string, step int) *jsonScanner {
	s := newJSONScanner(pushSchema)
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

// fieldsOf returns what a scanner of pushSchema kept, as encoding/json
// would decode it.
func fieldsOf(s *jsonScanner) testkit.PushFields {
	return testkit.PushFields{
		Ref:           s.String(fieldRef),
		After:         s.String(fieldAfter),
		Deleted:       s.Bool(fieldDeleted),
		Repository:    s.String(fieldFullName),
		DefaultBranch: s.String(fieldDefaultBranch),
	}
}

// unmarshalStruct decodes doc with encoding/json, with the scanner's limits.
func unmarshalStruct(doc []byte) (p testkit.PushFields, typeOK, exact bool) {
	return testkit.DecodePush(doc, maxFieldLen, pushSchema.limits[fieldAfter])
}

func TestJSONScanner(t *testing.T) {
	for _, c := range []struct {
		name    string
		doc     string
		syntax  string // in the syntax error; "" when valid
		typeErr string // in the type error; "" when none
		want    testkit.PushFields
	}{
		{name: "push", doc: `{"ref":"refs/heads/main","deleted":false,"repository":{"full_name":"o/r","default_branch":"main"}}`,
			want: testkit.PushFields{Ref: "refs/heads/main", Repository: "o/r", DefaultBranch: "main"}},
		{name: "deleted", doc: `{"deleted":true}`, want: testkit.PushFields{Deleted: true}},
		{name: "white space everywhere", doc: " \t\r\n{ \"ref\" : \"x\" , \"deleted\" :\ttrue\n}\n ", want: testkit.PushFields{Ref: "x", Deleted: true}},
		{name: "the last of two wins", doc: `{"ref":"a","ref":"b"}`, want: testkit.PushFields{Ref: "b"}},
		{name: "null keeps the value", doc: `{"ref":"a","ref":null,"deleted":null,"repository":null}`, want: testkit.PushFields{Ref: "a"}},
		{name: "objects merge", doc: `{"repository":{"full_name":"a"},"repository":{"default_branch":"b"}}`,
			want: testkit.PushFields{Repository: "a", DefaultBranch: "b"}},
		{name: "nested fields of the same name are not the field", doc: `{"head_commit":{"ref":"x","deleted":true},"commits":[{"ref":"y"}],"repository":{"owner":{"full_name":"z"}}}`},
		{name: "fields in an array are not the field", doc: `{"repository":[{"full_name":"z"}]}`, typeErr: "repository is an array"},
		{name: "escapes", doc: `{"ref":"a\"\\\/\b\f\n\r\t\u00e9\u20ac"}`, want: testkit.PushFields{Ref: "a\"\\/\b\f\n\r\té€"}},
		{name: "escaped key", doc: `{"r\u0065f":"x"}`, want: testkit.PushFields{Ref: "x"}},
		{name: "key in another case", doc: `{"Ref":"x"}`},
		{name: "surrogate pair", doc: `{"ref":"\ud83d\ude00"}`, want: testkit.PushFields{Ref: "😀"}},
		{name: "lone high surrogate", doc: `{"ref":"\ud83dx"}`, want: testkit.PushFields{Ref: "\ufffdx"}},
		{name: "high surrogate then escape", doc: `{"ref":"\ud83d\n"}`, want: testkit.PushFields{Ref: "\ufffd\n"}},
		{name: "two high surrogates", doc: `{"ref":"\ud83d\ud83d\ude00"}`, want: testkit.PushFields{Ref: "\ufffd😀"}},
		{name: "lone low surrogate", doc: `{"ref":"\ude00"}`, want: testkit.PushFields{Ref: "\ufffd"}},
		{name: "invalid UTF-8", doc: "{\"ref\":\"a\xff\xfeb\"}", want: testkit.PushFields{Ref: "a\ufffd\ufffdb"}},
		{name: "numbers", doc: `[0,-0,1.5,-2e10,3E+2,4e-2,10,0.0]`, typeErr: "the document is an array"},
		{name: "top-level number", doc: `12`, typeErr: "the document is a number"},
		{name: "top-level null", doc: `null`},
		{name: "top-level string", doc: `"x"`, typeErr: "the document is a string"},
		{name: "ref a number", doc: `{"ref":1}`, typeErr: "ref is a number, not a string"},
		{name: "deleted a string", doc: `{"deleted":"yes"}`, typeErr: "deleted is a string, not a boolean"},
		{name: "repository a string", doc: `{"repository":"o/r"}`, typeErr: "repository is a string, not an object"},
		{name: "full_name an object", doc: `{"repository":{"full_name":{"ref":"x"}}}`, typeErr: "repository.full_name is an object"},
		{name: "too long a ref", doc: `{"ref":"` + strings.Repeat("a", maxFieldLen+1) + `"}`, typeErr: "ref is longer than 1024 bytes"},
		{name: "new tip", doc: `{"after":"` + strings.Repeat("0123456789abcdef", 4) + `"}`, want: testkit.PushFields{After: strings.Repeat("0123456789abcdef", 4)}},
		{name: "too long a new tip", doc: `{"after":"` + strings.Repeat("a", 65) + `"}`, typeErr: "after is longer than 64 bytes"},
		{name: "long unrelated string", doc: `{"zen":"` + strings.Repeat("a", 100000) + `","ref":"r"}`, want: testkit.PushFields{Ref: "r"}},
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
	want := testkit.PushFields{Repository: "", DefaultBranch: "b"}
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

// TestJSONScannerArrays: a field inside an array of objects keeps the value
// of every element, in order, within the field's Max bytes in all.
func TestJSONScannerArrays(t *testing.T) {
	schema := newJSONSchema(jsonField{Path: "state", Kind: kindString}, jsonField{Path: "branches[].name", Kind: kindString})
	for _, tc := range []struct {
		name     string
		doc      string
		want     []string
		complete bool
		typeErr  string
	}{
		{name: "names", doc: `{"branches":[{"name":"master","commit":{"name":"x"}},{"protected":true,"name":"dev"}],"name":"top"}`,
			want: []string{"master", "dev"}, complete: true},
		{name: "empty array", doc: `{"branches":[]}`, complete: true},
		{name: "element without the field", doc: `{"branches":[{},{"name":"a"}]}`, want: []string{"a"}, complete: true},
		{name: "null element and null name", doc: `{"branches":[null,{"name":null},{"name":"b"}]}`, want: []string{"b"}, complete: true},
		{name: "nested arrays are not the field", doc: `{"x":[{"branches":[{"name":"no"}]}],"branches":[{"name":"yes"}]}`,
			want: []string{"yes"}, complete: true},
		{name: "empty name", doc: `{"branches":[{"name":""},{"name":"c"}]}`, want: []string{"", "c"}, complete: true},
		{name: "escapes", doc: `{"branches":[{"name":"a\u00e9"}]}`, want: []string{"aé"}, complete: true},
		{name: "too many", doc: `{"branches":[` + strings.Repeat(`{"name":"`+strings.Repeat("b", 300)+`"},`, 3) + `{"name":"last"}]}`,
			want: []string{strings.Repeat("b", 300), strings.Repeat("b", 300), strings.Repeat("b", 300), "last"}, complete: true},
		{name: "cut short", doc: `{"branches":[` + strings.Repeat(`{"name":"`+strings.Repeat("b", 400)+`"},`, 3) + `{"name":"last"}]}`,
			want: []string{strings.Repeat("b", 400), strings.Repeat("b", 400)}, complete: false},
		{name: "not an array", doc: `{"branches":{"name":"x"}}`, typeErr: "branches is an object, not an array"},
		{name: "element not an object", doc: `{"branches":["x"]}`, typeErr: "branches[] is a string, not an object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, step := range []int{0, 1, 7} {
				s := newJSONScanner(schema)
				s.resetFor(schema)
				b := []byte(tc.doc)
				if step == 0 {
					step = len(b)
				}
				for len(b) > 0 {
					n := min(step, len(b))
					s.Write(b[:n])
					b = b[n:]
				}
				if err := s.Finish(); err != nil {
					t.Fatalf("step %d: %v", step, err)
				}
				err := s.TypeErr()
				if tc.typeErr != "" {
					if err == nil || !strings.Contains(err.Error(), tc.typeErr) {
						t.Fatalf("step %d: type error %v, want %q", step, err, tc.typeErr)
					}
					continue
				}
				if err != nil {
					t.Fatalf("step %d: %v", step, err)
				}
				got, complete := s.Strings(1)
				if !slices.Equal(got, tc.want) || complete != tc.complete {
					t.Errorf("step %d: %q complete=%v, want %q complete=%v", step, got, complete, tc.want, tc.complete)
				}
			}
		})
	}
}

// TestJSONScannerNumbers: a number of the schema is kept as written and
// read by Int; a number elsewhere is only checked; a number where a string
// is expected, or a string where a number is, is a type error.
func TestJSONScannerNumbers(t *testing.T) {
	schema := newJSONSchema(
		jsonField{Path: "number", Kind: kindNumber, Max: 20},
		jsonField{Path: "pr.iid", Kind: kindNumber, Max: 20},
		jsonField{Path: "name", Kind: kindString},
	)
	for _, tc := range []struct {
		doc     string
		number  int64
		ok      bool
		typeErr string
	}{
		{`{"number":42,"x":[1,2.5e3],"name":"a"}`, 42, true, ""},
		{`{"number": -7 , "pr":{"iid":3}}`, -7, true, ""},
		{`{"number":1.5}`, 0, false, ""},
		{`{"number":1e3}`, 0, false, ""},
		{`{"number":0}`, 0, true, ""},
		{`{"number":null}`, 0, false, ""},
		{`{}`, 0, false, ""},
		{`{"number":123456789012345678901234}`, 0, false, "number is longer than 20 bytes"},
		{`{"number":"42"}`, 0, false, "number is a string, not a number"},
		{`{"name":42}`, 0, false, "name is a number, not a string"},
	} {
		s := newJSONScanner(schema)
		for i := range len(tc.doc) { // a byte at a time: numbers cut anywhere
			s.Write([]byte{tc.doc[i]})
		}
		if err := s.Finish(); err != nil {
			t.Errorf("%s: %v", tc.doc, err)
			continue
		}
		err := s.TypeErr()
		if tc.typeErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.typeErr) {
				t.Errorf("%s: type error %v, want %q", tc.doc, err, tc.typeErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: type error %v", tc.doc, err)
		}
		if n, ok := s.Int(0); n != tc.number || ok != tc.ok {
			t.Errorf("%s: Int = %d, %v; want %d, %v", tc.doc, n, ok, tc.number, tc.ok)
		}
		if strings.Contains(tc.doc, "iid") {
			if n, ok := s.Int(1); n != 3 || !ok {
				t.Errorf("%s: pr.iid = %d, %v", tc.doc, n, ok)
			}
		}
		if s.String(2) != "" && s.String(2) != "a" {
			t.Errorf("%s: name %q", tc.doc, s.String(2))
		}
	}
}
