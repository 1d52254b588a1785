package delivery

import (
	"strings"
	"testing"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/testkit"
)

// TestGitHubTestVector checks the verifier against the example in GitHub's
// "Validating webhook deliveries".
func TestGitHubTestVector(t *testing.T) {
	const (
		secret = "It's a Secret to Everybody"
		body   = "Hello, World!"
		header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
	)
	v := newVerifier([][]byte{[]byte(secret)})
	if !v.verify(header, []byte(body)) {
		t.Error("GitHub's test vector does not verify")
	}
	if v.verify(header, []byte(body+"\n")) {
		t.Error("a body with one more byte verifies")
	}
	if newVerifier([][]byte{[]byte(secret + " ")}).verify(header, []byte(body)) {
		t.Error("another secret verifies")
	}
}

func TestVerify(t *testing.T) {
	body := []byte(`{"zen":"Keep it logically awesome."}`)
	good := testkit.Sign("s3cret", body)
	goodHex := strings.TrimPrefix(good, "sha256=")
	v := newVerifier([][]byte{[]byte("old"), []byte("s3cret")})

	for _, tc := range []struct {
		name   string
		header string
		want   bool
	}{
		{"second secret matches", good, true},
		{"upper-case hex", "sha256=" + strings.ToUpper(goodHex), true},
		{"empty", "", false},
		{"no prefix", goodHex, false},
		{"sha1 prefix", "sha1=" + goodHex, false},
		{"upper-case prefix", "SHA256=" + goodHex, false},
		{"space after =", "sha256= " + goodHex[1:], false},
		{"truncated", good[:len(good)-2], false},
		{"too long", good + "00", false},
		{"not hex", "sha256=" + strings.Repeat("zz", 32), false},
		{"one bit off", "sha256=" + flipLastHexDigit(goodHex), false},
		{"all zeros", "sha256=" + strings.Repeat("0", 64), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := v.verify(tc.header, body); got != tc.want {
				t.Errorf("verify(%q) = %v, want %v", tc.header, got, tc.want)
			}
		})
	}

	if (&verifier{}).verify(good, body) {
		t.Error("a verifier without secrets verifies")
	}
	// The pooled MACs must not carry state from one delivery to the next.
	for range 3 {
		if !v.verify(testkit.Sign("old", body), body) || v.verify(good, body[1:]) {
			t.Fatal("verifying again gives another answer")
		}
	}
}

func flipLastHexDigit(s string) string {
	last := s[len(s)-1]
	if last == '0' {
		last = '1'
	} else {
		last = '0'
	}
	return s[:len(s)-1] + string(last)
}

func TestDecodeHex(t *testing.T) {
	var dst [2]byte
	for _, tc := range []struct {
		in   string
		ok   bool
		want [2]byte
	}{
		{"00ff", true, [2]byte{0, 0xff}},
		{"A0b9", true, [2]byte{0xa0, 0xb9}},
		{"0g00", false, [2]byte{}},
		{"000", false, [2]byte{}},
		{"00000", false, [2]byte{}},
		{"", false, [2]byte{}},
	} {
		dst = [2]byte{}
		if ok := decodeHex(dst[:], tc.in); ok != tc.ok || (ok && dst != tc.want) {
			t.Errorf("decodeHex(%q) = %v %x, want %v %x", tc.in, ok, dst, tc.ok, tc.want)
		}
	}
}
