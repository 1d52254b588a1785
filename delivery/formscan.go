package delivery

import (
	"errors"
	"io"
	"net/url"
)

// maxFormFields is how many fields a form may have, as in url.ParseQuery.
const maxFormFields = 10000

var (
	errFormSemicolon = errors.New("invalid semicolon separator in query")
	errFormFields    = errors.New("number of URL query parameters exceeded limit")
)

// A formScanner decodes an application/x-www-form-urlencoded body as it is
// written, and writes the decoded value of its first payload field to out.
// It reports the error url.ParseQuery would (Finish), holding no more than
// a few bytes whatever the body's length. It decodes in place: Write
// overwrites p.
type formScanner struct {
	out io.Writer

	fields   int  // '&' seen, plus one
	inValue  bool // past the field's '='
	key      [len(payloadKey)]byte
	keyLen   int
	keyLong  bool // the key is not payload: longer
	feeding  bool // this field's value goes to out
	fed      bool // a payload field was found
	pct      int  // bytes of a %XX escape read, 0 when not in one
	pctBytes [2]byte
	semi     bool  // the field holds a ';'
	fieldErr error // the field's first escape error
	err      error // the form's error so far
}

const payloadKey = "payload"

func (f *formScanner) reset(out io.Writer) {
	*f = formScanner{out: out, fields: 1}
}

// Write decodes p, overwriting it.
func (f *formScanner) Write(p []byte) (int, error) {
	w := 0 // decoded bytes of the payload value in p[:w]
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == ';' { // anywhere in the field, as url.ParseQuery checks
			f.semi = true
		}
		if f.pct > 0 {
			f.pctBytes[f.pct-1] = c
			if c == '&' || (!f.inValue && c == '=') {
				f.escapeError()
				// c ends the part: handle it below.
			} else if f.pct++; f.pct < 3 {
				continue
			} else {
				hi, ok1 := fromHexChar(f.pctBytes[0])
				lo, ok2 := fromHexChar(f.pctBytes[1])
				if !ok1 || !ok2 {
					f.escapeError()
					continue
				}
				f.pct = 0
				w = f.decoded(p, w, hi<<4|lo)
				continue
			}
		}
		switch c {
		case '&':
			w = f.flush(p, w)
			f.endField()
			f.fields++
		case ';':
		case '=':
			if !f.inValue {
				f.inValue = true
				f.feeding = !f.fed && !f.keyLong && string(f.key[:f.keyLen]) == payloadKey
				if f.feeding {
					f.fed = true
				}
				continue
			}
			w = f.decoded(p, w, c)
		case '%':
			f.pct = 1
		case '+':
			w = f.decoded(p, w, ' ')
		default:
			w = f.decoded(p, w, c)
		}
	}
	f.flush(p, w)
	return len(p), nil
}

// decoded adds the decoded byte c of the current part, and returns where
// the next payload byte goes in p.
func (f *formScanner) decoded(p []byte, w int, c byte) int {
	switch {
	case f.fieldErr != nil:
	case f.inValue:
		if f.feeding {
			p[w] = c
			return w + 1
		}
	case f.keyLen < len(f.key):
		f.key[f.keyLen] = c
		f.keyLen++
	default:
		f.keyLong = true
	}
	return w
}

// flush writes the payload bytes decoded so far.
func (f *formScanner) flush(p []byte, w int) int {
	if w > 0 {
		f.out.Write(p[:w])
	}
	return 0
}

// escapeError records the %-escape being read as invalid, as
// url.QueryUnescape words it.
func (f *formScanner) escapeError() {
	if f.fieldErr == nil {
		n := f.pct - 1
		if n > 2 {
			n = 2
		}
		f.fieldErr = url.EscapeError("%" + string(f.pctBytes[:n]))
	}
	f.pct = 0
}

// endField ends a field, as url.ParseQuery would.
func (f *formScanner) endField() {
	if f.pct > 0 { // the body ends inside an escape
		f.escapeError()
	}
	if !f.inValue && !f.fed && f.fieldErr == nil && !f.keyLong && string(f.key[:f.keyLen]) == payloadKey {
		f.fed = true // a payload field without '=' is empty
	}
	switch {
	case f.semi:
		f.err = errFormSemicolon // ParseQuery keeps the last of these
	case f.fieldErr != nil && f.err == nil:
		f.err = f.fieldErr
	}
	f.inValue, f.keyLen, f.keyLong, f.feeding, f.semi, f.fieldErr = false, 0, false, false, false, nil
}

// Finish ends the form and returns its error, and whether it had a
// payload field.
func (f *formScanner) Finish() (found bool, err error) {
	f.endField()
	if f.fields > maxFormFields {
		return false, errFormFields
	}
	return f.fed, f.err
}
