package delivery

import (
	"crypto/hmac"
	"crypto/sha256"
	"hash"
	"strings"
	"sync"
)

// signaturePrefix starts the value of X-Hub-Signature-256. GitHub's SHA-1
// header, X-Hub-Signature, is never accepted.
const signaturePrefix = "sha256="

// verifier checks X-Hub-Signature-256 against one or more secrets. It keeps
// a pool of keyed HMACs per secret, so verifying a delivery allocates nothing
// for the MAC itself. Its zero value verifies nothing.
type verifier struct {
	macs []*sync.Pool // one per secret, each holding hash.Hash keyed with it
}

// newVerifier returns a verifier that accepts a signature made with any one
// of secrets.
func newVerifier(secrets [][]byte) *verifier {
	v := &verifier{macs: make([]*sync.Pool, len(secrets))}
	for i, secret := range secrets {
		key := append([]byte(nil), secret...)
		v.macs[i] = &sync.Pool{New: func() any { return hmac.New(sha256.New, key) }}
	}
	return v
}

// verify reports whether header, the value of X-Hub-Signature-256, is the
// HMAC-SHA256 of body under one of the verifier's secrets. A header that is
// not "sha256=" followed by 64 hex digits never verifies. MACs are compared
// with hmac.Equal, over the raw bytes of the body.
func (v *verifier) verify(header string, body []byte) bool {
	want, ok := parseSignature(header)
	if !ok {
		return false
	}
	macs := v.begin(nil)
	for _, mac := range macs {
		mac.Write(body)
	}
	return v.end(macs, [][sha256.Size]byte{want})
}

// parseSignature returns the MAC that header, a value of
// X-Hub-Signature-256, holds, and whether it is well-formed: "sha256="
// followed by 64 hex digits.
func parseSignature(header string) (sum [sha256.Size]byte, ok bool) {
	hexSum, ok := strings.CutPrefix(header, signaturePrefix)
	if !ok || len(hexSum) != 2*sha256.Size {
		return sum, false
	}
	return sum, decodeHex(sum[:], hexSum)
}

// begin returns one fresh keyed HMAC per secret, appended to macs[:0]:
// write the body to each of them as it arrives, then call end.
func (v *verifier) begin(macs []hash.Hash) []hash.Hash {
	macs = macs[:0]
	for _, pool := range v.macs {
		mac := pool.Get().(hash.Hash)
		mac.Reset()
		macs = append(macs, mac)
	}
	return macs
}

// end reports whether one of macs, from begin, is one of wants, and gives
// them back. Every secret and every wanted MAC is tried, so the time taken
// does not tell which one matched.
func (v *verifier) end(macs []hash.Hash, wants [][sha256.Size]byte) bool {
	var got [sha256.Size]byte
	valid := false
	for i, mac := range macs {
		sum := mac.Sum(got[:0])
		for j := range wants {
			if hmac.Equal(sum, wants[j][:]) {
				valid = true
			}
		}
		v.macs[i].Put(mac)
		macs[i] = nil
	}
	return valid
}

// decodeHex decodes the hex digits of s, two per byte, into dst, and reports
// whether s held exactly len(dst) bytes of them. Unlike hex.Decode it needs no
// []byte copy of s.
func decodeHex(dst []byte, s string) bool {
	if len(s) != 2*len(dst) {
		return false
	}
	for i := range dst {
		hi, ok1 := fromHexChar(s[2*i])
		lo, ok2 := fromHexChar(s[2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

func fromHexChar(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
