package delivery

import (
	"bytes"
	"net/url"
	"strings"
	"testing"
)

// scanForm decodes body in pieces of step bytes (0: at once) and returns
// the payload bytes it passed on, whether it found one, and its error.
func scanForm(body string, step int) (string, bool, error) {
	var out bytes.Buffer
	var f formScanner
	f.reset(&out)
	writeInSteps(&f, []byte(body), step) // a copy: Write decodes in place
	found, err := f.Finish()
	return out.String(), found, err
}

func TestFormScanner(t *testing.T) {
	for _, c := range []struct {
		name, body string
		payload    string
		found      bool
		err        string
	}{
		{"payload", "payload=%7B%22a%22%3A1%7D", `{"a":1}`, true, ""},
		{"plus is a space", "payload=a+b%2Bc", "a b+c", true, ""},
		{"among others", "x=1&payload=p&y=2", "p", true, ""},
		{"the first wins", "payload=one&payload=two", "one", true, ""},
		{"escaped key", "pay%6Coad=p", "p", true, ""},
		{"key without value", "payload", "", true, ""},
		{"equals in the value", "payload=a=b", "a=b", true, ""},
		{"longer key", "payloads=p", "", false, ""},
		{"shorter key", "payloa=p", "", false, ""},
		{"no payload", "other=1", "", false, ""},
		{"empty", "", "", false, ""},
		{"empty fields", "&&payload=p&", "p", true, ""},
		{"bad escape in the value", "payload=%zz", "", true, `invalid URL escape "%zz"`},
		{"bad escape in the key", "a%g=1&payload=p", "p", true, `invalid URL escape "%g"`},
		{"escape cut by the end", "payload=ab%4", "ab", true, `invalid URL escape "%4"`},
		{"escape cut by &", "payload=%&x=1", "", true, `invalid URL escape "%"`},
		{"escape cut by = in the key", "a%=1", "", false, `invalid URL escape "%"`},
		{"the first escape error", "a=%xx&b=%yy", "", false, `invalid URL escape "%xx"`},
		{"semicolon", "a=1;b=2&payload=p", "p", true, "invalid semicolon separator in query"},
		{"semicolon wins over an escape error", "a=%xx&b=;", "", false, "invalid semicolon separator in query"},
		{"escaped semicolon is fine", "payload=%3B", ";", true, ""},
		{"too many fields", strings.Repeat("a=1&", maxFormFields) + "payload=p", "p", true, "number of URL query parameters exceeded limit"},
	} {
		t.Run(c.name, func(t *testing.T) {
			// The case agrees with url.ParseQuery.
			form, err := url.ParseQuery(c.body)
			if (err == nil) != (c.err == "") || err != nil && err.Error() != c.err {
				t.Fatalf("the case is wrong: url.ParseQuery error %v", err)
			}
			if err == nil && (form.Has("payload") != c.found || form.Get("payload") != c.payload) {
				t.Fatalf("the case is wrong: url.ParseQuery payload %q", form["payload"])
			}
			for _, step := range []int{0, 1, 2, 5} {
				payload, found, err := scanForm(c.body, step)
				if (err == nil) != (c.err == "") || err != nil && err.Error() != c.err {
					t.Errorf("step %d: error %v, want %q", step, err, c.err)
				}
				if c.err == "" && (found != c.found || payload != c.payload) {
					t.Errorf("step %d: payload %q (found %v), want %q (%v)", step, payload, found, c.payload, c.found)
				}
			}
		})
	}
}

// FuzzFormScanner: the scanner agrees with url.ParseQuery on the error and
// on the payload field, however the body is cut.
func FuzzFormScanner(f *testing.F) {
	f.Add("payload="+url.QueryEscape(string(fixture(f, "push-branch.json"))), uint8(0))
	f.Add("a=%zz&payload=x;y&payload=%2", uint8(1))
	f.Add("pay%6coad=a+b&c", uint8(3))
	f.Fuzz(func(t *testing.T, body string, step uint8) {
		payload, found, err := scanForm(body, int(step))
		form, want := url.ParseQuery(body)
		if (err == nil) != (want == nil) || err != nil && err.Error() != want.Error() {
			t.Fatalf("error %v, url.ParseQuery %v", err, want)
		}
		if err == nil && (found != form.Has("payload") || payload != form.Get("payload")) {
			t.Fatalf("payload %q (found %v), url.ParseQuery %q", payload, found, form["payload"])
		}
	})
}
