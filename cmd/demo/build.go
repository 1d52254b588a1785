package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/testkit"
)

// The demo's estimates of the first run, for a person waiting: compiling
// ./cmd/caddy with an empty Go build cache took 8 CPU-minutes here (6m user,
// 2m system; 23 minutes of wall time at nice 19 on a loaded two-core
// machine), and reading the module's sources (go list), which downloads
// Caddy's modules on a fresh machine, a few seconds once they are there.
const (
	compileEstimate = "about 5 minutes on two idle cores, 10 or more on a busy machine"
	readingAfter    = 3 * time.Second // say what takes long past this
	dotEvery        = 5 * time.Second
)

// buildCaddy returns Caddy with this module, built from this clone by
// testkit (once for given sources: later runs find it built). While it
// works, it tells w what it does: a line when it starts compiling, with a
// dot every few seconds and the time it took at the end.
func buildCaddy(ctx context.Context, w io.Writer) (string, error) {
	p := newProgress(w, dotEvery)
	reading := time.AfterFunc(readingAfter, func() {
		p.begin("Reading this clone's sources and Caddy's modules (the first run downloads them)")
	})
	bins, err := testkit.Build(ctx, func([]string) {
		reading.Stop()
		p.begin("Compiling Caddy with this module, once for these sources (" + compileEstimate + ")")
	}, "./cmd/caddy")
	reading.Stop()
	if err != nil {
		p.finish("failed")
		return "", fmt.Errorf("building Caddy: %w", err)
	}
	if !p.finish("done") {
		fmt.Fprintln(w, "Caddy with this module is built already for these sources.")
	}
	return bins[0], nil
}

// progress shows a step that takes long: its line, then a dot every few
// seconds, then how it ended and how long it took.
type progress struct {
	w     io.Writer
	stop  chan struct{}
	mu    sync.Mutex
	start time.Time // of the step shown
	shown bool      // a step is shown and not ended
	any   bool      // a step was ever shown
	over  bool      // finished: no more steps
}

// newProgress returns a progress that writes to w, a dot every period
// while a step is shown. Finish it when done.
func newProgress(w io.Writer, period time.Duration) *progress {
	p := &progress{w: w, stop: make(chan struct{})}
	go func() {
		tick := time.NewTicker(period)
		defer tick.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-tick.C:
				p.mu.Lock()
				if p.shown {
					fmt.Fprint(p.w, ".")
				}
				p.mu.Unlock()
			}
		}
	}()
	return p
}

// begin ends the step shown, if any, and shows a new one.
func (p *progress) begin(what string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.over {
		return
	}
	p.endLocked("done")
	fmt.Fprintf(p.w, "%s ", what)
	p.start, p.shown, p.any = time.Now(), true, true
}

// finish ends the step shown, if any, with how ("done") and its duration,
// stops the dots, and reports whether a step was ever shown. Steps begun
// after it are not shown.
func (p *progress) finish(how string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.over {
		p.over = true
		close(p.stop)
	}
	p.endLocked(how)
	return p.any
}

func (p *progress) endLocked(how string) {
	if p.shown {
		fmt.Fprintf(p.w, " %s in %s\n", how, time.Since(p.start).Round(time.Second))
		p.shown = false
	}
}
