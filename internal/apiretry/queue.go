package apiretry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"sync"
	"time"
)

// The results a Retrier notes, one per request (and one per report given
// up without a request): the result label of the API request metric.
const (
	// ResultOK is a request that succeeded.
	ResultOK = "ok"
	// ResultRetry is a request that failed and will be tried again.
	ResultRetry = "retry"
	// ResultError is a request that failed in a way retrying cannot fix
	// (a 4xx other than a rate limit): the report is given up.
	ResultError = "error"
	// ResultDropped is a report given up: its last attempt failed past
	// the bound of attempts or age, the queue overflowed, or the queue was
	// closed before it could be sent.
	ResultDropped = "dropped"
)

// ErrDropped ends a report that a Retrier gave up.
var ErrDropped = errors.New("report dropped")

// Queue is a bounded queue of reports that one goroutine (Start) hands to
// send, in order. Push never blocks: when the queue is full the oldest
// report is dropped. A panic in send is recovered and the report dropped, so
// that one report's bug ends neither the goroutine nor Caddy.
type Queue[T any] struct {
	size int
	send func(context.Context, T)
	drop func(item T, why string)
	log  func(item T, panicked any, stack []byte)

	mu      sync.Mutex
	items   []T
	started bool
	closed  bool

	wake    chan struct{} // one slot: a report is queued
	closing chan struct{} // closed by Close
	done    chan struct{} // closed when the goroutine ended
	ctx     context.Context
	cancel  context.CancelFunc
}

// NewQueue returns a Queue of at most size reports (256 when size <= 0)
// that calls send for each, with a context that Close cancels; drop is
// called for each report given up without being sent, with why; onPanic,
// when set, is told of a panic in send, with the report and the stack.
func NewQueue[T any](size int, send func(context.Context, T), drop func(item T, why string), onPanic func(item T, v any, stack []byte)) *Queue[T] {
	if size <= 0 {
		size = 256
	}
	q := &Queue[T]{
		size: size, send: send, drop: drop, log: onPanic,
		wake: make(chan struct{}, 1), closing: make(chan struct{}), done: make(chan struct{}),
	}
	q.ctx, q.cancel = context.WithCancel(context.Background())
	return q
}

// Start starts the goroutine that sends the reports. Calls after the first,
// or after Close, do nothing.
func (q *Queue[T]) Start() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.started || q.closed {
		return
	}
	q.started = true
	go q.run()
}

// Push queues item; it never blocks.
func (q *Queue[T]) Push(item T) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		q.drop(item, "reporter closed")
		return
	}
	var evicted []T
	if len(q.items) >= q.size {
		evicted = append(evicted, q.items[0])
		q.items = q.items[1:]
	}
	q.items = append(q.items, item)
	q.mu.Unlock()
	for _, e := range evicted {
		q.drop(e, "queue full")
	}
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Close stops taking reports, sends those queued until ctx ends, then stops
// the goroutine and returns; what was not sent by then is dropped, and
// Close returns ctx's error.
func (q *Queue[T]) Close(ctx context.Context) error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		<-q.done
		return nil
	}
	q.closed = true
	started := q.started
	q.mu.Unlock()
	close(q.closing)
	if !started {
		q.cancel()
		q.dropRest("reporter closed before it started")
		close(q.done)
		return nil
	}
	var err error
	select {
	case <-q.done:
	case <-ctx.Done():
		q.cancel()
		<-q.done
		err = fmt.Errorf("flushing reports: %w", ctx.Err())
	}
	q.cancel()
	return err
}

func (q *Queue[T]) dropRest(why string) {
	q.mu.Lock()
	rest := q.items
	q.items = nil
	q.mu.Unlock()
	for _, item := range rest {
		q.drop(item, why)
	}
}

func (q *Queue[T]) next() (T, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var zero T
	if len(q.items) == 0 {
		return zero, false
	}
	item := q.items[0]
	q.items = q.items[1:]
	return item, true
}

func (q *Queue[T]) run() {
	defer close(q.done)
	for {
		if q.ctx.Err() != nil {
			q.dropRest("reporter closed")
			return
		}
		if item, ok := q.next(); ok {
			q.sendRecovering(item)
			continue
		}
		select {
		case <-q.wake:
		case <-q.ctx.Done():
		case <-q.closing:
			q.mu.Lock()
			empty := len(q.items) == 0
			q.mu.Unlock()
			if empty {
				return
			}
		}
	}
}

func (q *Queue[T]) sendRecovering(item T) {
	defer func() {
		if v := recover(); v != nil {
			if q.log != nil {
				q.log(item, v, debug.Stack())
			}
			q.drop(item, fmt.Sprintf("sending it panicked: %v", v))
		}
	}()
	q.send(q.ctx, item)
}

// Retrier runs one report's requests, retrying each with backoff within the
// report's bounds, and holds every request back while the API's rate limit
// lasts. It is used by the one goroutine of a Queue; zero fields take the
// defaults.
type Retrier struct {
	// MaxAttempts is how many requests one call may take. Default 10.
	MaxAttempts int
	// MaxAge is how long after it was queued a report is given up.
	// Default 1h.
	MaxAge time.Duration
	// Base and MaxBackoff shape the exponential backoff. Defaults 2s, 5m.
	Base, MaxBackoff time.Duration
	// Now and Sleep are the clock. Defaults time.Now and Sleep.
	Now   func() time.Time
	Sleep func(context.Context, time.Duration) error

	notBefore time.Time // no request before this (a rate limit)
}

// Attempt is the outcome of one request: its answer (nil when none came),
// whether the caller knows it for a rate limit, and its error.
type Attempt struct {
	Resp    *http.Response
	Limited bool
	Err     error
}

// Note is told of each request's result (ResultOK, ...), with the attempt's
// number, the wait before the next one (ResultRetry) and the error; for
// ResultDropped, why says why the report was given up.
type Note func(result string, attempt int, wait time.Duration, why string, err error)

// Do runs call until it succeeds, fails for good, or the report queued at
// queued is past its bounds; it returns nil on success.
func (r *Retrier) Do(ctx context.Context, queued time.Time, call func(context.Context) Attempt, note Note) error {
	maxAttempts, maxAge, base, maxBackoff := r.MaxAttempts, r.MaxAge, r.Base, r.MaxBackoff
	if maxAttempts <= 0 {
		maxAttempts = 10
	}
	if maxAge <= 0 {
		maxAge = time.Hour
	}
	if base <= 0 {
		base = 2 * time.Second
	}
	if maxBackoff <= 0 {
		maxBackoff = 5 * time.Minute
	}
	now, sleep := r.Now, r.Sleep
	if now == nil {
		now = time.Now
	}
	if sleep == nil {
		sleep = Sleep
	}
	deadline := queued.Add(maxAge)
	for attempt := 1; ; attempt++ {
		if wait := r.notBefore.Sub(now()); wait > 0 {
			if r.notBefore.After(deadline) {
				note(ResultDropped, attempt, 0, "rate limited past the report's age bound", nil)
				return ErrDropped
			}
			if err := sleep(ctx, wait); err != nil {
				note(ResultDropped, attempt, 0, "reporter closed", nil)
				return err
			}
		}
		a := call(ctx)
		if a.Err == nil {
			note(ResultOK, attempt, 0, "", nil)
			return nil
		}
		if ctx.Err() != nil {
			note(ResultDropped, attempt, 0, "reporter closed", a.Err)
			return a.Err
		}
		t := now()
		wait, retry, fromHeaders := Delay(a.Resp, a.Limited, attempt, t, base, maxBackoff)
		if !retry {
			note(ResultError, attempt, 0, "", a.Err)
			return a.Err
		}
		next := t.Add(wait)
		if fromHeaders {
			r.notBefore = next
		}
		if attempt >= maxAttempts || next.After(deadline) {
			note(ResultDropped, attempt, 0, "attempts or age spent", a.Err)
			return ErrDropped
		}
		note(ResultRetry, attempt, wait, "", a.Err)
		if err := sleep(ctx, wait); err != nil {
			note(ResultDropped, attempt, 0, "reporter closed", nil)
			return err
		}
	}
}
