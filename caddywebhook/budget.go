package caddywebhook

import (
	"hash"
	"sync"
	"time"
)

// Memory for bodies. A body is never held whole: it is read through a
// buffer of bodyBuffer bytes into the HMACs of the secrets and a streaming
// decoder (jsonScanner, formScanner) that keeps only the few fields a
// decision needs. Every body being read, however small, holds one of the
// slots of bodies, shared by all github_webhook handlers of the process; a
// request that finds every slot taken is answered 503 at once rather than
// waiting behind slow clients. So bodies of unverified deliveries hold at
// most
//
//	bodySlots × (bodyBuffer + bodyStateSize + 4 × maxFieldLen + ~0.5 KiB per secret)
//
// that is about 1024 × 18 KiB ≈ 18 MiB with one secret, whatever the number
// of clients and whatever they declare; a body of unknown length costs the
// same as any other. And no body takes a slot for long: reading one gets
// bodyTimeout, unless the server sets its own read_body timeout.
var (
	bodySlots   = 1024
	bodies      = newBodyBudget(bodySlots)
	bodyTimeout = 10 * time.Second
)

// bodyBuffer is the size of the buffer a body is read through.
const bodyBuffer = 8 << 10

// bodyStateSize is about what a bodyState holds besides its buffer, kept
// fields and MACs: the JSON scanner's nesting stack and the rest.
const bodyStateSize = 2 << 10

// bodyBudget is a fixed number of slots for bodies being read.
type bodyBudget struct {
	slots chan struct{}
}

func newBodyBudget(n int) *bodyBudget {
	return &bodyBudget{slots: make(chan struct{}, n)}
}

// tryAcquire takes a slot, and reports whether there was one.
func (b *bodyBudget) tryAcquire() bool {
	select {
	case b.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

func (b *bodyBudget) release() { <-b.slots }

// inUse returns how many slots are taken.
func (b *bodyBudget) inUse() int { return len(b.slots) }

// bodyState is what reading one body takes: the buffer, the decoders and
// the MACs. They are pooled; at most bodySlots are in use at once.
type bodyState struct {
	buf  [bodyBuffer]byte
	json *jsonScanner
	form formScanner
	macs []hash.Hash
}

var bodyStates = sync.Pool{New: func() any {
	return &bodyState{json: newJSONScanner(payloadSchema, allSchemas()...)}
}}
