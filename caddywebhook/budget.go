package caddywebhook

import (
	"context"
	"hash"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Memory for bodies. A body is never held whole: it is read through a
// buffer of bodyBuffer bytes into the HMACs of the secrets and a streaming
// decoder (jsonScanner, formScanner) that keeps only the few fields a
// decision needs. Every body being read, however small, holds one of the
// slots of bodies, shared by all github_webhook handlers of the process. So
// bodies of unverified deliveries hold at most
//
//	bodySlots × (bodyBuffer + bodyStateSize + 4 × maxFieldLen + ~0.5 KiB per secret)
//
// that is about 1024 × 18 KiB ≈ 18 MiB with one secret, whatever the number
// of clients and whatever they declare; a body of unknown length costs the
// same as any other. And no body takes a slot for long: reading one gets
// bodyTimeout, unless the server sets its own read_body timeout.
//
// The slots are shared fairly between clients (see bodyBudget), so that no
// number of slow connections locks GitHub out.
var (
	bodySlots   = 1024
	bodies      = newBodyBudget(bodySlots, slotWait)
	bodyTimeout = 10 * time.Second
)

// slotWait is how long a delivery may wait for a slot before it is
// answered 503: half of the 10 s that GitHub gives a delivery.
const slotWait = 5 * time.Second

// evictAfter is how long a body must have been read before another client
// may take its slot. A genuine delivery sends its body at once, and is read
// in far less; a body trickled by a client holding more than its share is
// not.
const evictAfter = 250 * time.Millisecond

// bodyBuffer is the size of the buffer a body is read through.
const bodyBuffer = 8 << 10

// bodyStateSize is about what a bodyState holds besides its buffer, kept
// fields and MACs: the JSON scanner's nesting stack and the rest.
const bodyStateSize = 2 << 10

// bodyBudget is a fixed number of slots for bodies being read, shared
// fairly between clients. A client is an address (an IPv6 one with its
// /64, which one host usually has whole), as Caddy sees it: through a
// trusted proxy, the address the proxy names. Every stream of an HTTP/2
// connection counts against the connection's address, so one connection
// takes no more than one address.
//
// A request takes a free slot if there is one. When every slot is taken,
// the request takes the slot of the body read the longest among those of
// the client holding the most, if that client holds at least two more than
// the request's, and that body has been read for evictAfter: its reads
// fail at once and it is answered 503, and the slot passes to the request
// as soon as that body has stopped (every body being read holds its slot
// until then: the memory bound holds). Otherwise the request waits, at
// most its budget's wait and while its context lasts; a slot that frees
// goes to the waiting request whose client holds the fewest, the oldest
// first among equals; and a waiting request takes a slot as above as soon
// as one can be taken. A request that got none is answered 503.
//
// Why a genuine delivery gets a slot within evictAfter (and so within a
// second) during an attack: GitHub's address holds no slot, or one for a
// few milliseconds per delivery. While fewer addresses than slots hold
// every slot, one of them holds at least two (the pigeonhole), and so at
// least two more than GitHub: GitHub's delivery takes that address's
// oldest slot at once, or once that body has been read for evictAfter.
// The attacker cannot keep its bodies younger than that: its own requests
// take no slot from an address holding at most one more than theirs (it
// cannot churn its slots once its addresses hold even shares), a slot it
// gives up goes to GitHub's waiting delivery first (it holds the fewest),
// and a slot it is refused leaves its connection waiting, not reading. The
// genuine delivery's body is then read at once, in far less than
// evictAfter, so no one takes its slot. For the loopback addresses of one
// host (253), a /24 (256) or an IPv6 /56 (256 /64s), that holds for the
// 1024 slots of the process. An attacker with more addresses than slots (a
// botnet) can hold every slot one to an address: then the genuine delivery
// waits for the next slot that frees (each frees within bodyTimeout, and
// the slot goes to GitHub's delivery ahead of any client holding one),
// for at most slotWait.
type bodyBudget struct {
	size int           // slots
	wait time.Duration // how long a request may wait for a slot

	mu      sync.Mutex
	held    []*slot            // every body being read, evicted ones until they stop
	clients map[string]*client // those holding or waiting for a slot
	queue   []*waiter          // requests waiting for a slot, oldest first
}

// client is one client address holding or waiting for slots.
type client struct {
	key     string
	held    int // the slots it holds or was promised, not counting evicted ones
	waiting int // its requests that wait for a slot or were promised one
}

// slot is one body being read.
type slot struct {
	c       *client
	start   time.Time
	stop    func()      // makes the body's reads fail at once
	evicted atomic.Bool // its slot was taken: stop reading, answer 503
	heir    *waiter     // who gets the slot once an evicted body stops
	i       int         // its index in held
}

// waiter is a request waiting for a slot.
type waiter struct {
	c     *client
	stop  func()
	ready chan *slot // the slot it got; buffered
	state int
	of    *slot // the evicted slot it inherits, when promised
}

// The states of a waiter.
const (
	queued   = iota // in queue
	promised        // the heir of an evicted slot
	served          // its slot is in ready
)

func newBodyBudget(n int, wait time.Duration) *bodyBudget {
	return &bodyBudget{size: n, wait: wait, clients: map[string]*client{}}
}

// acquire takes a slot for a body from the client address key; stop makes
// that body's reads fail at once (the slot was taken from it). It waits for
// one as bodyBudget says, and returns nil when none came.
func (b *bodyBudget) acquire(ctx context.Context, key string, stop func()) *slot {
	now := time.Now()
	b.mu.Lock()
	c := b.clients[key]
	if c == nil {
		c = &client{key: key}
		b.clients[key] = c
	}
	if len(b.held) < b.size {
		c.held++
		s := b.add(c, stop, now)
		b.mu.Unlock()
		return s
	}
	w := &waiter{c: c, stop: stop, ready: make(chan *slot, 1)}
	c.waiting++
	retry := b.evictFor(w, now)
	if w.state == queued {
		b.queue = append(b.queue, w)
	}
	b.mu.Unlock()

	giveUp := time.NewTimer(b.wait)
	defer giveUp.Stop()
	again := time.NewTimer(retry)
	defer again.Stop()
	for {
		select {
		case s := <-w.ready:
			return s
		case <-again.C:
			b.mu.Lock()
			if w.state == queued {
				if retry = b.evictFor(w, time.Now()); w.state == promised {
					b.unqueue(w)
				}
			}
			b.mu.Unlock()
			again.Reset(retry)
		case <-giveUp.C:
			return b.giveUp(w)
		case <-ctx.Done():
			return b.giveUp(w)
		}
	}
}

// add makes a slot for c, already counted in c.held.
func (b *bodyBudget) add(c *client, stop func(), now time.Time) *slot {
	s := &slot{c: c, start: now, stop: stop, i: len(b.held)}
	b.held = append(b.held, s)
	return s
}

// evictFor takes for w, if it can, the slot of the body read the longest
// among those of the client holding the most, when that client holds two
// more than w's and the body has been read for evictAfter; w becomes that
// slot's heir. Otherwise it returns when to try again: when a body that
// could be taken will have been read for evictAfter, or in a second.
func (b *bodyBudget) evictFor(w *waiter, now time.Time) (retry time.Duration) {
	var victim *slot
	retry = time.Second
	for _, s := range b.held {
		if s.evicted.Load() || s.c.held < w.c.held+2 {
			continue
		}
		if age := now.Sub(s.start); age < evictAfter {
			retry = min(retry, evictAfter-age)
			continue
		}
		if victim == nil || s.c.held > victim.c.held || s.c.held == victim.c.held && s.start.Before(victim.start) {
			victim = s
		}
	}
	if victim == nil {
		return retry
	}
	victim.evicted.Store(true)
	victim.c.held--
	b.forget(victim.c)
	victim.heir = w
	w.c.held++
	w.state, w.of = promised, victim
	if victim.stop != nil {
		victim.stop()
	}
	return time.Hour // the timer is not needed any more
}

// giveUp withdraws w, and returns the slot it got meanwhile, if any.
func (b *bodyBudget) giveUp(w *waiter) *slot {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch w.state {
	case served:
		return <-w.ready
	case queued:
		b.unqueue(w)
	case promised:
		w.of.heir = nil
		w.c.held--
	}
	w.c.waiting--
	b.forget(w.c)
	return nil
}

// release gives back the slot of a body that stopped being read: to the
// heir of an evicted body, else to the waiting request whose client holds
// the fewest slots.
func (b *bodyBudget) release(s *slot) {
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	last := b.held[len(b.held)-1]
	b.held[s.i], last.i = last, s.i
	b.held = b.held[:len(b.held)-1]
	if !s.evicted.Load() {
		s.c.held--
		b.forget(s.c)
	}
	w := s.heir
	if w == nil && len(b.queue) > 0 {
		next := 0
		for i, q := range b.queue {
			if q.c.held < b.queue[next].c.held {
				next = i
			}
		}
		w = b.queue[next]
		b.queue = append(b.queue[:next], b.queue[next+1:]...)
		w.c.held++
	}
	if w != nil {
		w.c.waiting--
		w.state, w.of = served, nil
		w.ready <- b.add(w.c, w.stop, now)
	}
}

// unqueue removes w from the queue.
func (b *bodyBudget) unqueue(w *waiter) {
	for i, q := range b.queue {
		if q == w {
			b.queue = append(b.queue[:i], b.queue[i+1:]...)
			return
		}
	}
}

// forget drops c once it holds and waits for nothing.
func (b *bodyBudget) forget(c *client) {
	if c.held == 0 && c.waiting == 0 && b.clients[c.key] == c {
		delete(b.clients, c.key)
	}
}

// inUse returns how many slots are taken.
func (b *bodyBudget) inUse() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.held)
}

// clientKey returns the client address that a request's body counts
// against: an IPv4 address, or the /64 of an IPv6 one.
func clientKey(remote string) string {
	if host, _, err := net.SplitHostPort(remote); err == nil {
		remote = host
	}
	ip, err := netip.ParseAddr(remote)
	if err != nil {
		return remote
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

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
