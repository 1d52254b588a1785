package caddywebhook

import (
	"context"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Memory for bodies. A body is never held whole: it is read through a
// buffer of bodyBuffer bytes into a delivery.Reader (the HMACs of the
// secrets and a streaming decoder that keeps only the few fields a decision
// needs). Every body being read, however small, holds one of the slots of
// bodies, shared by all github_webhook handlers of the process. So bodies
// of unverified deliveries hold at most
//
//	bodySlots × (bodyBuffer + delivery.ReaderSize + ~0.5 KiB per secret)
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
// answered 503, at most: each waits between half of it and all of it, so
// that the requests of an attack that began together do not give up, and
// come back, together (thousands of connections at once overflow the
// kernel's accept queue, and a genuine delivery's connection then waits
// for the handshake's retransmission, a second or more). Waiting costs
// the server a parked goroutine and nothing else: while slots are fought
// over, the longer a request waits, the fewer come back. A genuine
// delivery rarely waits (see bodyBudget), and GitHub gives up after 10 s.
const slotWait = 10 * time.Second

// evictAfter is how long a body must have been read before another client
// may take its slot. A genuine delivery sends its body at once, and is read
// in far less; a body trickled by a client holding more than its share is
// not.
const evictAfter = 250 * time.Millisecond

// bodyBuffer is the size of the buffer a body is read through.
const bodyBuffer = 8 << 10

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
// until then: the memory bound holds). Otherwise the request waits, for
// between half its budget's wait and all of it (see slotWait), and while
// its context lasts; a slot that frees
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
//
// A request looks only at the clients holding at least two more slots than
// its own (levels), so the waiting requests of an attacker whose addresses
// hold even shares cost nothing to retry; a slot that frees looks at the
// clients that wait (one per address), not at each waiting request.
type bodyBudget struct {
	size int           // slots
	wait time.Duration // how long a request may wait for a slot

	mu       sync.Mutex
	inFlight int                // bodies being read, evicted ones until they stop
	clients  map[string]*client // those holding or waiting for a slot
	levels   [][]*client        // levels[n]: the clients holding n slots, n ≥ 1; the last is not empty
	waiting  []*client          // the clients with requests in their queue
}

// client is one client address holding or waiting for slots.
type client struct {
	key   string
	slots []*slot   // the bodies it is reading, oldest first, evicted ones not counted
	held  int       // len(slots), plus the slots promised to its requests
	queue []*waiter // its requests waiting for a slot, oldest first
	wi    int       // its index in waiting, while queue is not empty
	li    int       // its index in levels[held], while held > 0
	heirs int       // its requests promised a slot
}

// slot is one body being read.
type slot struct {
	c       *client
	start   time.Time
	stop    func()      // makes the body's reads fail at once
	evicted atomic.Bool // its slot was taken: stop reading, answer 503
	heir    *waiter     // who gets the slot once an evicted body stops
}

// waiter is a request waiting for a slot.
type waiter struct {
	c     *client
	since time.Time
	stop  func()
	ready chan *slot // the slot it got; buffered
	state int
	of    *slot // the evicted slot it inherits, when promised
}

// The states of a waiter.
const (
	queued   = iota // in its client's queue
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
	if b.inFlight < b.size {
		b.setHeld(c, c.held+1)
		s := b.add(c, stop, now)
		b.mu.Unlock()
		return s
	}
	w := &waiter{c: c, since: now, stop: stop, ready: make(chan *slot, 1)}
	retry := b.evictFor(w, now)
	if w.state == queued {
		b.enqueue(w)
	}
	b.mu.Unlock()

	giveUp := time.NewTimer(b.wait/2 + rand.N(b.wait/2+1))
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

// add makes a slot for a body of c, already counted in c.held.
func (b *bodyBudget) add(c *client, stop func(), now time.Time) *slot {
	s := &slot{c: c, start: now, stop: stop}
	c.slots = append(c.slots, s)
	b.inFlight++
	return s
}

// evictFor takes for w, if it can, the slot of the body read the longest
// among those of the clients holding the most, down to those holding two
// more than w's client, that have been read for evictAfter; w becomes
// that slot's heir. Otherwise it returns when to try again: when such a
// body will have been read for evictAfter, or in a second.
func (b *bodyBudget) evictFor(w *waiter, now time.Time) (retry time.Duration) {
	retry = time.Second
	for n := len(b.levels) - 1; n >= w.c.held+2; n-- {
		var victim *slot
		for _, c := range b.levels[n] {
			if len(c.slots) > 0 && (victim == nil || c.slots[0].start.Before(victim.start)) {
				victim = c.slots[0]
			}
		}
		if victim == nil {
			continue
		}
		if age := now.Sub(victim.start); age < evictAfter {
			retry = min(retry, evictAfter-age)
			continue
		}
		v := victim.c
		v.slots = v.slots[1:]
		b.setHeld(v, v.held-1)
		b.forget(v)
		victim.evicted.Store(true)
		victim.heir = w
		b.setHeld(w.c, w.c.held+1)
		w.c.heirs++
		w.state, w.of = promised, victim
		if victim.stop != nil {
			victim.stop()
		}
		return time.Hour // the timer is not needed any more
	}
	return retry
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
		w.c.heirs--
		b.setHeld(w.c, w.c.held-1)
	}
	b.forget(w.c)
	return nil
}

// release gives back the slot of a body that stopped being read: to the
// heir of an evicted body, else to the oldest waiting request of the
// client that holds the fewest slots.
func (b *bodyBudget) release(s *slot) {
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.inFlight--
	if c := s.c; !s.evicted.Load() {
		if i := slices.Index(c.slots, s); i >= 0 {
			c.slots = slices.Delete(c.slots, i, i+1)
		}
		b.setHeld(c, c.held-1)
		b.forget(c)
	}
	w := s.heir
	if w != nil {
		w.c.heirs--
	} else if len(b.waiting) > 0 {
		next := b.waiting[0]
		for _, c := range b.waiting[1:] {
			if c.held < next.held || c.held == next.held && c.queue[0].since.Before(next.queue[0].since) {
				next = c
			}
		}
		w = next.queue[0]
		b.unqueue(w)
		b.setHeld(w.c, w.c.held+1)
	}
	if w != nil {
		w.state, w.of = served, nil
		w.ready <- b.add(w.c, w.stop, now)
	}
}

// setHeld sets how many slots c holds, and moves it to its level.
func (b *bodyBudget) setHeld(c *client, n int) {
	if c.held > 0 {
		level := b.levels[c.held]
		last := level[len(level)-1]
		level[c.li], last.li = last, c.li
		b.levels[c.held] = level[:len(level)-1]
		for len(b.levels) > 0 && len(b.levels[len(b.levels)-1]) == 0 {
			b.levels = b.levels[:len(b.levels)-1]
		}
	}
	c.held = n
	if n > 0 {
		for len(b.levels) <= n {
			b.levels = append(b.levels, nil)
		}
		c.li = len(b.levels[n])
		b.levels[n] = append(b.levels[n], c)
	}
}

// enqueue puts w at the end of its client's queue.
func (b *bodyBudget) enqueue(w *waiter) {
	c := w.c
	if len(c.queue) == 0 {
		c.wi = len(b.waiting)
		b.waiting = append(b.waiting, c)
	}
	c.queue = append(c.queue, w)
}

// unqueue removes w from its client's queue.
func (b *bodyBudget) unqueue(w *waiter) {
	c := w.c
	if i := slices.Index(c.queue, w); i >= 0 {
		c.queue = slices.Delete(c.queue, i, i+1)
	}
	if len(c.queue) == 0 {
		last := b.waiting[len(b.waiting)-1]
		b.waiting[c.wi], last.wi = last, c.wi
		b.waiting = b.waiting[:len(b.waiting)-1]
	}
}

// forget drops c once it holds and waits for nothing.
func (b *bodyBudget) forget(c *client) {
	if c.held == 0 && len(c.queue) == 0 && c.heirs == 0 && b.clients[c.key] == c {
		delete(b.clients, c.key)
	}
}

// inUse returns how many slots are taken.
func (b *bodyBudget) inUse() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.inFlight
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

// bodyState is the buffer a body is read through. They are pooled; at most
// bodySlots are in use at once, as are the delivery package's Readers.
type bodyState struct {
	buf [bodyBuffer]byte
}

var bodyStates = sync.Pool{New: func() any { return new(bodyState) }}
