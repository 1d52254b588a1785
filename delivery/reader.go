package delivery

import (
	"hash"
	"sync"
)

// ReaderSize is about the most a Reader holds, in bytes, whatever the body,
// besides one keyed hash per secret (about 0.5 KiB each): the kept fields
// of the largest schema of any forge (four of at most 1 KiB, two of 256
// bytes, 64 bytes, and a pull request's action, number, head repository
// and label in less than 1 KiB) and about 2 KiB for the rest of the
// scanners' state (the JSON nesting stack, keys).
const ReaderSize = 4<<10 + 2*256 + 64 + 1<<10 + 2<<10

// Reader reads the body of one delivery as it streams: through the keyed
// hashes of every secret, and a decoder that keeps only the fields an
// Event carries. Nothing it reads is trusted before Finish has verified the
// signature over all of it. Readers are pooled: Close gives one back, after
// which it must not be used.
type Reader struct {
	head Head
	open bool // the hashes are out of their pools

	json *jsonScanner
	form formScanner
	macs []hash.Hash
}

var readers = sync.Pool{New: func() any {
	return &Reader{json: newJSONScanner(payloadSchema, everySchema()...)}
}}

// payloadTee takes what a form's payload field decodes to, for a forge
// that signs the payload rather than the body: the MACs read it, then the
// JSON scanner.
type payloadTee struct{ rd *Reader }

func (t payloadTee) Write(p []byte) (int, error) {
	for _, mac := range t.rd.macs {
		mac.Write(p)
	}
	return t.rd.json.Write(p)
}

// Scan reads the next piece of the body. It may overwrite chunk (a form is
// decoded in place, after the hashes have read it): pass a buffer of your
// own, and do not use its bytes afterwards.
func (rd *Reader) Scan(chunk []byte) {
	if !rd.head.macPayload {
		for _, mac := range rd.macs {
			mac.Write(chunk)
		}
	}
	switch rd.head.format {
	case formatJSON:
		rd.json.Write(chunk)
	case formatForm:
		rd.form.Write(chunk)
	}
}

// Finish verifies the signature over all that Scan read, which must be the
// whole body, and returns what the delivery says. Its error is an *Error,
// checked in this order: the signature (ErrSignature), the event header
// (ErrNoEvent), the content type (ErrContentType), the payload's syntax,
// then, for an event of the kinds Head was asked for, its fields
// (ErrPayload). An event of another kind is no error: its Kind is Other.
// Every secret is tried, so the time taken does not tell which one matched.
func (rd *Reader) Finish() (Event, error) {
	if !rd.open {
		return Event{}, refuse(ErrSignature, "signature mismatch")
	}
	rd.open = false
	hd := &rd.head
	if !hd.forge.verifier().end(rd.macs, hd.sigs[:hd.nsigs]) && !hd.verified {
		return Event{}, refuse(ErrSignature, "signature mismatch")
	}
	return hd.forge.finish(rd)
}

// Close gives rd back to the pool, with its hashes if Finish has not.
func (rd *Reader) Close() {
	if rd.open {
		rd.open = false
		rd.head.forge.verifier().end(rd.macs, nil)
	}
	rd.head = Head{}
	readers.Put(rd)
}
