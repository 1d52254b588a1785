package delivery

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// jsonKind is what a field of a schema must hold.
type jsonKind uint8

const (
	kindObject jsonKind = iota // an object, whose fields the schema may name
	kindString
	kindBool
	kindArray // an array of objects, whose fields the schema may name
	// kindNumber is a number, kept as written (Int reads an integer).
	kindNumber
)

func (k jsonKind) String() string {
	switch k {
	case kindString:
		return "a string"
	case kindBool:
		return "a boolean"
	case kindArray:
		return "an array"
	case kindNumber:
		return "a number"
	}
	return "an object"
}

// A jsonSchema names the fields that a jsonScanner keeps: dotted paths
// through objects, such as "repository.full_name", each with the kind it
// must hold. A name ending in "[]" is an array of objects, as in
// "branches[].name": a string field inside one is repeated, and the
// scanner keeps the value of each element (Strings). Everything else of the
// document is only checked to be JSON.
type jsonSchema struct {
	nodes    []schemaNode // nodes[0] is the document itself, an object
	paths    []string     // the leaves' paths, by leaf index
	repeated []bool       // by leaf: the field is inside an array
	limits   []int        // by leaf: the longest value kept, in bytes
}

type schemaNode struct {
	name     string
	path     string
	kind     jsonKind
	leaf     int   // the index of a string or boolean field; -1 for objects and arrays
	children []int // indexes in nodes; an array's one child is its elements' object
}

// newJSONSchema returns the schema of fields, each a dotted path and the
// kind its value must have. The objects and arrays on the way are implied.
func newJSONSchema(fields ...jsonField) *jsonSchema {
	s := &jsonSchema{nodes: []schemaNode{{kind: kindObject, leaf: -1}}}
	add := func(parent int, n schemaNode) int {
		s.nodes = append(s.nodes, n)
		child := len(s.nodes) - 1
		s.nodes[parent].children = append(s.nodes[parent].children, child)
		return child
	}
	for _, f := range fields {
		parent := 0
		repeated := false
		names := strings.Split(f.Path, ".")
		for i, seg := range names {
			name, isArray := strings.CutSuffix(seg, "[]")
			path := strings.Join(names[:i], ".")
			if path != "" {
				path += "."
			}
			path += name
			last := i == len(names)-1
			if last && isArray || f.Kind == kindObject || f.Kind == kindArray {
				panic("jsonschema: field " + f.Path + " must be a string, a boolean or a number")
			}
			child := -1
			for _, c := range s.nodes[parent].children {
				if s.nodes[c].name == name {
					child = c
				}
			}
			kind := kindObject
			if isArray {
				kind = kindArray
			}
			if child < 0 {
				n := schemaNode{name: name, path: path, kind: kind, leaf: -1}
				if last {
					n.kind, n.leaf = f.Kind, len(s.paths)
					s.paths = append(s.paths, f.Path)
					s.repeated = append(s.repeated, repeated)
					limit := f.Max
					if limit <= 0 || limit > maxFieldLen {
						limit = maxFieldLen
					}
					s.limits = append(s.limits, limit)
				}
				child = add(parent, n)
				if isArray {
					add(child, schemaNode{path: path + "[]", kind: kindObject, leaf: -1})
				}
			} else if last || s.nodes[child].kind != kind {
				panic("jsonschema: field " + f.Path + " named twice or inside a leaf")
			}
			if isArray {
				repeated = true
				child = s.nodes[child].children[0]
			}
			parent = child
		}
	}
	return s
}

// jsonField is one field a schema keeps.
type jsonField struct {
	Path string
	Kind jsonKind
	// Max is the longest string value kept, in bytes once decoded (for a
	// repeated field: all its values together); a longer one is a type
	// error. 0 (or more than maxFieldLen) is maxFieldLen.
	Max int
}

// Limits of a jsonScanner.
const (
	// maxFieldLen is the longest string value kept, in bytes once decoded,
	// unless a field's Max is less. A longer one is a type error: no field
	// a delivery is decided on is longer (refs and repository names are far
	// shorter).
	maxFieldLen = 1024
	// maxKeyLen is the longest object key compared with a schema's names;
	// longer keys match none.
	maxKeyLen = 64
	// maxNesting is how deep arrays and objects may nest, as in
	// encoding/json.
	maxNesting = 10000
)

// scanner states: what the next byte may be.
const (
	stValue      uint8 = iota // a value (after ':' or ',' in an array, or at the top)
	stArrayFirst              // a value or ']'
	stKeyFirst                // a key or '}'
	stKey                     // a key
	stColon                   // ':'
	stAfterValue              // ',' or the closing bracket of the container
	stEnd                     // only white space
	stString                  // inside a string
	stEscape                  // after '\' in a string
	stUnicode                 // inside \uXXXX
	stNumMinus                // after '-'
	stNumZero                 // after a leading 0
	stNumInt                  // in the integer part
	stNumDot                  // after '.'
	stNumFrac                 // in the fraction
	stNumE                    // after 'e'
	stNumESign                // after 'e+' or 'e-'
	stNumExp                  // in the exponent
	stLiteral                 // in true, false or null
)

// A jsonScanner checks, one byte at a time, that what is written to it is
// one JSON document, as encoding/json.Valid would, and keeps the fields of
// its schema (the last occurrence of each, as encoding/json.Unmarshal does).
// It holds no more than its fixed state and the Max bytes (at most
// maxFieldLen) of each string field (per repeated field: for all its values
// together), however long the document. Keys are compared exactly (GitHub
// writes them in lower case), not case-insensitively as encoding/json does.
//
// A null where a field is expected leaves it as it was, as in encoding/json;
// a value of another kind is a type error, which Err reports only when the
// caller asks for the fields (TypeErr).
type jsonScanner struct {
	schema *jsonSchema

	state  uint8
	depth  int
	stack  [maxNesting/64 + 1]uint64 // bit set: the container at depth d+1 is an object
	offset int64                     // bytes consumed
	err    error                     // the first syntax error: scanning stops
	// typeErr is the first field of the schema holding another kind.
	typeErr error

	// Fields of the schema: the containers of the first `tracked` depths
	// are objects of the schema, nodes[d] being the one at depth d.
	tracked int
	nodes   [8]int
	match   int // the node that the key just read names, or -1

	// The string being read: where its decoded bytes go.
	dst      int // dstNone, dstKey or a leaf index
	key      []byte
	keyLong  bool
	values   [][]byte // by leaf
	present  []bool   // by leaf: the field was set (not null)
	bools    []bool   // by leaf
	tooLong  []bool   // by leaf
	escape   rune     // the \uXXXX being read
	escaped  int      // its hex digits read
	high     rune     // a high surrogate waiting for its low half, or 0
	literal  string   // the literal being read
	litPos   int
	inString bool // the string is a key
}

const (
	dstNone = -1
	dstKey  = -2
)

// newJSONScanner returns a scanner keeping the fields of schema, with room
// for those of the other schemas it may be reset for.
func newJSONScanner(schema *jsonSchema, others ...*jsonSchema) *jsonScanner {
	var limits []int // by leaf, the largest of any schema
	for _, sc := range append([]*jsonSchema{schema}, others...) {
		for i, l := range sc.limits {
			if i == len(limits) {
				limits = append(limits, 0)
			}
			limits[i] = max(limits[i], l)
		}
	}
	n := len(limits)
	s := &jsonScanner{
		schema:  schema,
		values:  make([][]byte, n),
		present: make([]bool, n),
		bools:   make([]bool, n),
		tooLong: make([]bool, n),
		key:     make([]byte, 0, maxKeyLen),
	}
	for i := range s.values { // never grown: emit stops at the field's limit
		s.values[i] = make([]byte, 0, limits[i])
	}
	s.reset()
	return s
}

// resetFor makes s ready for another document, whose fields of schema it
// keeps. schema must have no more fields, nor longer ones, than s has room
// for: it is one of those s was made with.
func (s *jsonScanner) resetFor(schema *jsonSchema) {
	if len(schema.paths) > len(s.values) {
		panic("jsonscanner: schema has more fields than the scanner has room for")
	}
	for i, l := range schema.limits {
		if l > cap(s.values[i]) {
			panic("jsonscanner: schema has longer fields than the scanner has room for")
		}
	}
	s.schema = schema
	s.reset()
}

// reset makes s ready for another document, keeping its buffers.
func (s *jsonScanner) reset() {
	s.state, s.depth, s.offset, s.err, s.typeErr = stValue, 0, 0, nil, nil
	s.tracked, s.match, s.dst = 0, -1, dstNone
	s.key, s.keyLong, s.high = s.key[:0], false, 0
	for i := range s.values {
		s.values[i] = s.values[i][:0]
		s.present[i], s.bools[i], s.tooLong[i] = false, false, false
	}
}

// SyntaxError is where and why a document is not JSON.
type jsonSyntaxError struct {
	msg    string
	offset int64
}

func (e *jsonSyntaxError) Error() string {
	return e.msg + " at byte " + strconv.FormatInt(e.offset, 10)
}

var errJSONEnd = errors.New("unexpected end of JSON input")

func (s *jsonScanner) fail(c byte, context string) {
	s.err = &jsonSyntaxError{msg: "invalid character " + quoteChar(c) + " " + context, offset: s.offset}
}

// quoteChar formats c as encoding/json's errors do.
func quoteChar(c byte) string {
	if c == '\'' {
		return `'\''`
	}
	if c == '"' {
		return `'"'`
	}
	s := strconv.Quote(string(rune(c)))
	return "'" + s[1:len(s)-1] + "'"
}

// Write scans p. It never fails: a syntax error is kept for Finish, and
// what follows it is ignored.
func (s *jsonScanner) Write(p []byte) (int, error) {
	for i := 0; i < len(p) && s.err == nil; i++ {
		c := p[i]
		switch s.state {
		case stString:
			// The bulk of a document: copy runs of plain bytes at once.
			j := i
			for j < len(p) && p[j] != '"' && p[j] != '\\' && p[j] >= 0x20 {
				j++
			}
			if j > i {
				s.flushHigh()
				s.emit(p[i:j]...)
				s.offset += int64(j - i)
				i = j
				if i == len(p) {
					return len(p), nil
				}
				c = p[i]
			}
			switch {
			case c == '"':
				s.flushHigh()
				s.endString()
			case c == '\\':
				s.state = stEscape
			default:
				s.fail(c, "in string literal")
			}
		case stEscape:
			if c == 'u' {
				s.state, s.escape, s.escaped = stUnicode, 0, 0
				break
			}
			s.flushHigh()
			switch c {
			case '"', '\\', '/':
				s.emit(c)
			case 'b':
				s.emit('\b')
			case 'f':
				s.emit('\f')
			case 'n':
				s.emit('\n')
			case 'r':
				s.emit('\r')
			case 't':
				s.emit('\t')
			default:
				s.fail(c, "in string escape code")
			}
			s.state = stString
		case stUnicode:
			d, ok := fromHexChar(c)
			if !ok {
				s.fail(c, `in \u hexadecimal character escape`)
				break
			}
			s.escape = s.escape<<4 | rune(d)
			if s.escaped++; s.escaped == 4 {
				s.unicode(s.escape)
				s.state = stString
			}
		case stValue, stArrayFirst:
			if isSpace(c) {
				break
			}
			if c == ']' && s.state == stArrayFirst {
				s.pop(c)
				break
			}
			s.beginValue(c)
		case stKeyFirst, stKey:
			switch {
			case isSpace(c):
			case c == '"':
				s.state, s.inString = stString, true
				s.dst = dstNone
				if s.depth == s.tracked {
					s.dst, s.key, s.keyLong = dstKey, s.key[:0], false
				}
			case c == '}' && s.state == stKeyFirst:
				s.pop(c)
			default:
				s.fail(c, "looking for beginning of object key string")
			}
		case stColon:
			switch {
			case isSpace(c):
			case c == ':':
				s.state = stValue
			default:
				s.fail(c, "after object key")
			}
		case stAfterValue:
			s.afterValue(c)
		case stEnd:
			if !isSpace(c) {
				s.fail(c, "after top-level value")
			}
		case stNumMinus:
			s.emitNumber(c)
			switch {
			case c == '0':
				s.state = stNumZero
			case '1' <= c && c <= '9':
				s.state = stNumInt
			default:
				s.fail(c, "in numeric literal")
			}
		case stNumZero, stNumInt:
			s.emitNumber(c)
			switch {
			case '0' <= c && c <= '9' && s.state == stNumInt:
			case c == '.':
				s.state = stNumDot
			case c == 'e' || c == 'E':
				s.state = stNumE
			default:
				s.endValue()
				s.afterValue(c)
			}
		case stNumDot:
			s.emitNumber(c)
			if '0' <= c && c <= '9' {
				s.state = stNumFrac
			} else {
				s.fail(c, "after decimal point in numeric literal")
			}
		case stNumFrac:
			s.emitNumber(c)
			switch {
			case '0' <= c && c <= '9':
			case c == 'e' || c == 'E':
				s.state = stNumE
			default:
				s.endValue()
				s.afterValue(c)
			}
		case stNumE:
			s.emitNumber(c)
			switch {
			case c == '+' || c == '-':
				s.state = stNumESign
			case '0' <= c && c <= '9':
				s.state = stNumExp
			default:
				s.fail(c, "in exponent of numeric literal")
			}
		case stNumESign:
			s.emitNumber(c)
			if '0' <= c && c <= '9' {
				s.state = stNumExp
			} else {
				s.fail(c, "in exponent of numeric literal")
			}
		case stNumExp:
			s.emitNumber(c)
			if '0' <= c && c <= '9' {
				break
			}
			s.endValue()
			s.afterValue(c)
		case stLiteral:
			if c != s.literal[s.litPos] {
				s.fail(c, "in literal "+s.literal+" (expecting "+quoteChar(s.literal[s.litPos])+")")
				break
			}
			if s.litPos++; s.litPos == len(s.literal) {
				s.endValue()
			}
		}
		if s.err == nil {
			s.offset++
		}
	}
	return len(p), nil
}

// Finish reports whether what was written is one JSON document.
func (s *jsonScanner) Finish() error {
	if s.err != nil {
		return s.err
	}
	switch s.state {
	case stEnd:
		return nil
	case stNumZero, stNumInt, stNumFrac, stNumExp:
		if s.depth == 0 {
			return nil
		}
	}
	return errJSONEnd
}

// TypeErr returns the first field of the schema that held a value of the
// wrong kind (or too long a string), or nil.
func (s *jsonScanner) TypeErr() error {
	if s.typeErr != nil {
		return s.typeErr
	}
	for i, long := range s.tooLong[:len(s.schema.paths)] {
		if s.schema.repeated[i] {
			continue // cut short, not wrong: see Strings
		}
		// Bytes that are not UTF-8 count as the U+FFFD that replaces them.
		if limit := s.schema.limits[i]; long || !utf8.Valid(s.values[i]) && len(s.String(i)) > limit {
			return fmt.Errorf("%s is longer than %d bytes", s.schema.paths[i], limit)
		}
	}
	return nil
}

// String returns the string field leaf, "" when it was absent or null.
func (s *jsonScanner) String(leaf int) string {
	if !s.present[leaf] {
		return ""
	}
	v := s.values[leaf]
	if utf8.Valid(v) {
		return string(v)
	}
	// As encoding/json does: each byte that is not UTF-8 becomes U+FFFD.
	var b strings.Builder
	for len(v) > 0 {
		r, n := utf8.DecodeRune(v)
		b.WriteRune(r)
		v = v[n:]
	}
	return b.String()
}

// Strings returns the values of the repeated string field leaf, in order.
// complete is false when they took more than the field's Max bytes together:
// then only those that fit whole are returned.
func (s *jsonScanner) Strings(leaf int) (values []string, complete bool) {
	if !s.present[leaf] {
		return nil, true
	}
	values = strings.Split(s.String(leaf), repeatSep)
	if s.tooLong[leaf] {
		return values[:len(values)-1], false
	}
	return values, true
}

// repeatSep separates the values of a repeated field: git refuses it in a
// branch name.
const repeatSep = "\x00"

// Int returns the number field leaf as an integer, and whether it was
// present and one.
func (s *jsonScanner) Int(leaf int) (int, bool) {
	if !s.present[leaf] {
		return 0, false
	}
	n, err := strconv.Atoi(string(s.values[leaf]))
	return n, err == nil
}

// Bool returns the boolean field leaf, false when it was absent or null.
func (s *jsonScanner) Bool(leaf int) bool { return s.present[leaf] && s.bools[leaf] }

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// beginValue starts the value whose first byte is c.
func (s *jsonScanner) beginValue(c byte) {
	node := -1
	switch {
	case s.depth == 0:
		node = 0
	case s.depth == s.tracked && s.isObject(s.depth):
		node = s.match
	case s.depth == s.tracked:
		// An element of an array of the schema.
		node = s.schema.nodes[s.nodes[s.depth]].children[0]
	}
	s.match = -1
	var kind jsonKind
	switch {
	case c == '{':
		kind = kindObject
	case c == '[':
		kind = kindArray
	case c == '"':
		kind = kindString
	case c == 't' || c == 'f':
		kind = kindBool
	case c == '-' || '0' <= c && c <= '9':
		kind = kindNumber
	case c == 'n':
		s.state, s.literal, s.litPos = stLiteral, "null", 1
		return // null leaves a field as it was
	}
	if node >= 0 {
		n := &s.schema.nodes[node]
		switch {
		case kind != n.kind:
			s.wrongKind(n, c)
			node = -1
		case kind == kindString && s.schema.repeated[n.leaf]:
			switch {
			case s.tooLong[n.leaf]:
				node = -1 // full: the values that fit are kept whole
			case s.present[n.leaf]:
				s.dst = n.leaf
				s.emit(repeatSep[0])
			}
			s.present[n.leaf] = true
		case kind == kindString:
			s.values[n.leaf] = s.values[n.leaf][:0]
			s.present[n.leaf], s.tooLong[n.leaf] = true, false
		case kind == kindBool:
			s.present[n.leaf], s.bools[n.leaf] = true, c == 't'
		case kind == kindNumber:
			s.values[n.leaf] = s.values[n.leaf][:0]
			s.present[n.leaf], s.tooLong[n.leaf] = true, false
			s.dst = n.leaf
			s.emit(c)
		}
	}
	switch {
	case c == '{':
		s.open(true, node)
		s.state = stKeyFirst
	case c == '[':
		s.open(false, node)
		s.state = stArrayFirst
	case c == '"':
		s.state, s.inString, s.dst = stString, false, dstNone
		if node >= 0 {
			s.dst = s.schema.nodes[node].leaf
		}
	case c == '-':
		s.state = stNumMinus
	case c == '0':
		s.state = stNumZero
	case '1' <= c && c <= '9':
		s.state = stNumInt
	case c == 't':
		s.state, s.literal, s.litPos = stLiteral, "true", 1
	case c == 'f':
		s.state, s.literal, s.litPos = stLiteral, "false", 1
	default:
		s.fail(c, "looking for beginning of value")
	}
}

func (s *jsonScanner) wrongKind(n *schemaNode, c byte) {
	if s.typeErr != nil {
		return
	}
	what := "a number"
	switch c {
	case '{':
		what = "an object"
	case '[':
		what = "an array"
	case '"':
		what = "a string"
	case 't', 'f':
		what = "a boolean"
	}
	if n.path == "" {
		s.typeErr = fmt.Errorf("the document is %s, not %s", what, n.kind)
	} else {
		s.typeErr = fmt.Errorf("%s is %s, not %s", n.path, what, n.kind)
	}
}

func (s *jsonScanner) isObject(depth int) bool {
	d := depth - 1
	return s.stack[d/64]&(1<<(d%64)) != 0
}

// open enters an object or array that is the value of node (-1 when no
// kept path leads into it), and tracks node when the path is followed.
func (s *jsonScanner) open(object bool, node int) {
	s.push(object)
	if node >= 0 && s.depth == s.tracked+1 && s.tracked+1 < len(s.nodes) {
		s.tracked++
		s.nodes[s.tracked] = node
	}
}

func (s *jsonScanner) push(object bool) {
	if s.depth == maxNesting {
		s.err = &jsonSyntaxError{msg: "exceeded max depth", offset: s.offset}
		return
	}
	d := s.depth
	if object {
		s.stack[d/64] |= 1 << (d % 64)
	} else {
		s.stack[d/64] &^= 1 << (d % 64)
	}
	s.depth++
}

// pop closes the container at the current depth with c.
func (s *jsonScanner) pop(c byte) {
	if s.tracked == s.depth {
		s.tracked--
	}
	s.depth--
	s.endValue()
}

// emitNumber keeps c, a byte of a number of the schema, if it is part of
// the number: the byte that ends a number belongs to what follows.
func (s *jsonScanner) emitNumber(c byte) {
	if s.dst >= 0 && ('0' <= c && c <= '9' || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-') {
		s.emit(c)
	}
}

// endValue moves past a complete value.
func (s *jsonScanner) endValue() {
	s.dst = dstNone
	if s.depth == 0 {
		s.state = stEnd
	} else {
		s.state = stAfterValue
	}
}

// afterValue reads c after a value inside a container.
func (s *jsonScanner) afterValue(c byte) {
	if s.state == stEnd {
		if !isSpace(c) {
			s.fail(c, "after top-level value")
		}
		return
	}
	s.state = stAfterValue
	object := s.isObject(s.depth)
	switch {
	case isSpace(c):
	case c == ',' && object:
		s.state = stKey
	case c == ',':
		s.state = stValue
	case c == '}' && object, c == ']' && !object:
		s.pop(c)
	case object:
		s.fail(c, "after object key:value pair")
	default:
		s.fail(c, "after array element")
	}
}

// endString ends the string being read.
func (s *jsonScanner) endString() {
	if s.inString {
		s.inString = false
		s.state = stColon
		s.match = -1
		if s.dst == dstKey && !s.keyLong {
			for _, c := range s.schema.nodes[s.nodes[s.depth]].children {
				if s.schema.nodes[c].name == string(s.key) {
					s.match = c
				}
			}
		}
		s.dst = dstNone
		return
	}
	s.dst = dstNone
	s.endValue()
}

// emit appends decoded bytes to the string being kept, if any.
func (s *jsonScanner) emit(b ...byte) {
	switch {
	case s.dst == dstNone:
	case s.dst == dstKey:
		if len(s.key)+len(b) > maxKeyLen {
			s.keyLong = true
			return
		}
		s.key = append(s.key, b...)
	case s.tooLong[s.dst]:
	default:
		v := s.values[s.dst]
		if len(v)+len(b) > s.schema.limits[s.dst] {
			s.tooLong[s.dst] = true
			return
		}
		s.values[s.dst] = append(v, b...)
	}
}

// unicode handles the rune of a \uXXXX escape, pairing surrogates as
// encoding/json does: a half without its other half is U+FFFD.
func (s *jsonScanner) unicode(r rune) {
	if s.high != 0 {
		high := s.high
		s.high = 0
		if 0xDC00 <= r && r < 0xE000 {
			s.emitRune((high-0xD800)<<10 | (r - 0xDC00) + 0x10000)
			return
		}
		s.emitRune(utf8.RuneError)
	}
	switch {
	case 0xD800 <= r && r < 0xDC00:
		s.high = r
	case 0xDC00 <= r && r < 0xE000:
		s.emitRune(utf8.RuneError)
	default:
		s.emitRune(r)
	}
}

// flushHigh ends a high surrogate that no low one followed.
func (s *jsonScanner) flushHigh() {
	if s.high != 0 {
		s.high = 0
		s.emitRune(utf8.RuneError)
	}
}

func (s *jsonScanner) emitRune(r rune) {
	if s.dst == dstNone {
		return
	}
	var b [utf8.UTFMax]byte
	n := utf8.EncodeRune(b[:], r)
	s.emit(b[:n]...)
}
