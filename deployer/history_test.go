package deployer

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestHistoryRecordsDeploys: real deploys (one good, one whose build fails,
// fetches of a dead remote) are in the history, newest first, with their
// facts; Status holds the newest without output tails; a remote that stays
// down is one entry however often it is retried; and the history is there
// again after a restart, read from the file.
func TestHistoryRecordsDeploys(t *testing.T) {
	r := newRemote(t)
	path := filepath.Join(t.TempDir(), "site")
	build := [][]string{{"sh", "-c", "if test -e broken; then echo 'the build broke on purpose' >&2; exit 3; fi"}}
	good := r.commit(map[string]string{"index.html": "good"})
	tg := start(t, Config{Path: path, Remote: r.bare, Branch: "main", Commands: build}, withRetryBase(50*time.Millisecond))
	tg.waitLive(good)
	bad := r.commit(map[string]string{"broken": "yes"})
	tg.Wake(ReasonDelivery)
	tg.waitResult("error", bad)

	// A poll finds the remote gone; its retries fail alike.
	dead := filepath.Join(t.TempDir(), "gone.git")
	tg.Update(Config{Path: path, Remote: dead, Branch: "main", Commands: build, Notify: tg.events.notify})
	tg.Wake(ReasonPoll)
	waitFor(t, "three failed fetches", func() bool {
		h := tg.History()
		return len(h) > 0 && h[0].Repeated >= 2
	})

	check := func(t *testing.T, h []Deploy, tails bool) {
		t.Helper()
		if len(h) != 3 {
			t.Fatalf("%d deploys in the history, want 3: %+v", len(h), h)
		}
		fetch, failed, ok := h[0], h[1], h[2]
		if ok.Result != "ok" || ok.Reason != ReasonStartup || ok.Commit != good || ok.Release == "" || ok.Error != "" {
			t.Errorf("the good deploy: %+v", ok)
		}
		if failed.Result != "error" || failed.Reason != ReasonDelivery || failed.Commit != bad || failed.Release == "" ||
			!strings.Contains(failed.Error, "exit status 3") {
			t.Errorf("the failed build: %+v", failed)
		}
		if got := strings.Contains(failed.OutputTail, "the build broke on purpose"); got != tails {
			t.Errorf("the failed build's output tail %q: kept %v, want %v", failed.OutputTail, got, tails)
		}
		if fetch.Result != "error" || fetch.Release != "" || fetch.Reason != ReasonPoll || !strings.Contains(fetch.Error, "fetching main") || fetch.Repeated < 2 {
			t.Errorf("the failed fetches: %+v", fetch)
		}
		for i, e := range h {
			if e.Started.IsZero() || e.Duration <= 0 {
				t.Errorf("deploy %d: started %v, duration %v", i, e.Started, time.Duration(e.Duration))
			}
			if i > 0 && !e.Started.Before(h[i-1].Started) {
				t.Errorf("deploy %d started %v, not before the newer %v", i, e.Started, h[i-1].Started)
			}
		}
	}
	tg.close() // ends the retries
	h := tg.History()
	check(t, h, true)
	check(t, tg.Status().History, false)

	// The next start reads it back; its own start-up leaves the failed tip
	// alone, so it adds nothing.
	again := start(t, Config{Path: path, Remote: r.bare, Branch: "main", Commands: build})
	waitFor(t, "the first wake handled", func() bool { return again.Status().Checked != nil })
	if got, want := fmt.Sprint(again.History()), fmt.Sprint(h); got != want {
		t.Errorf("after a restart the history is\n%s\nwant\n%s", got, want)
	}
}

// TestHistoryIsBounded: however many deploys, the history keeps the newest
// limit, errors cut to historyErrorMax, output tails on the newest
// historyTails failures only, and its file at most limit+historySlack
// lines; what is read back from the file is what was kept, a torn last line
// dropped.
func TestHistoryIsBounded(t *testing.T) {
	dir := t.TempDir()
	h := &history{limit: 50}
	if err := h.load(dir); err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	long := strings.Repeat("é", historyErrorMax) // two bytes a character
	for i := range 1000 {
		res := &Result{Result: "ok", Reason: ReasonDelivery, Commit: fmt.Sprintf("%040d", i), Release: fmt.Sprintf("r%d", i),
			Duration: Seconds(time.Second), At: start.Add(time.Duration(i) * time.Minute)}
		if i%2 == 1 {
			res.Result, res.Error, res.OutputTail = "error", fmt.Sprintf("build %d: %s", i, long), strings.Repeat("x", 2*tailSize)
		}
		if err := h.add(deployOf(res)); err != nil {
			t.Fatal(err)
		}
		if n := fileLines(t, h.file); n > h.limit+historySlack {
			t.Fatalf("after %d deploys the file has %d lines, over %d", i+1, n, h.limit+historySlack)
		}
	}
	list := h.newest(0, true)
	if len(list) != 50 || list[0].Release != "r999" || list[49].Release != "r950" {
		t.Fatalf("%d kept, newest %s, oldest %s; want 50, r999 to r950", len(list), list[0].Release, list[len(list)-1].Release)
	}
	tails := 0
	for i, e := range list {
		if len(e.Error) > historyErrorMax || len(e.OutputTail) > tailSize {
			t.Errorf("deploy %s keeps %d bytes of error and %d of output", e.Release, len(e.Error), len(e.OutputTail))
		}
		if e.Result == "error" && !strings.HasPrefix(e.Error, "build ") {
			t.Errorf("deploy %s: error %.20q…", e.Release, e.Error)
		}
		if e.OutputTail != "" {
			tails++
			if i >= 2*historyTails {
				t.Errorf("deploy %d (%s) keeps its output tail, past the newest %d failures", i, e.Release, historyTails)
			}
		}
	}
	if tails != historyTails {
		t.Errorf("%d deploys keep an output tail, want %d", tails, historyTails)
	}

	f, err := os.OpenFile(h.file, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"v":1,"result":"ok","rea`) // a crash mid-write
	f.Close()
	leftover := filepath.Join(dir, ".history-123.tmp") // a crash mid-compaction
	os.WriteFile(leftover, []byte("{}\n"), 0o600)
	back := &history{limit: 50}
	if err := back.load(dir); err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(back.newest(0, true)), fmt.Sprint(list); got != want {
		t.Errorf("read back:\n%.300s\nwant\n%.300s", got, want)
	}
	if n := fileLines(t, back.file); n != 50 {
		t.Errorf("the file holds %d lines after a torn line was read, want 50 (compacted)", n)
	}
	if _, err := os.Stat(leftover); err == nil {
		t.Errorf("a compaction's leftover %s is still there", leftover)
	}
}

func fileLines(t *testing.T, name string) int {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	n := 0
	for sc.Scan() {
		n++
	}
	return n
}

// BenchmarkHistoryMemory fills a history to its bound (historyLimit
// deploys, the file's slack past it) and reports the heap it holds once
// full (history-bytes) and per deploy kept: in the worst case, where every
// deploy failed with an error longer than historyErrorMax and an output
// tail of tailSize, and when every deploy succeeded.
func BenchmarkHistoryMemory(b *testing.B) {
	worst := Result{Result: "error", Reason: ReasonDelivery, Commit: strings.Repeat("a", 40),
		Release: "20261205T101500Z-aaaaaaaaaaaa", Duration: Seconds(time.Second),
		Error: strings.Repeat("e", 4*historyErrorMax), OutputTail: strings.Repeat("o", tailSize)}
	ok := Result{Result: "ok", Reason: ReasonDelivery, Commit: strings.Repeat("a", 40),
		Release: "20261205T101500Z-aaaaaaaaaaaa", Duration: Seconds(time.Second)}
	for _, c := range []struct {
		name string
		res  Result
	}{{"failed", worst}, {"ok", ok}} {
		b.Run(c.name, func(b *testing.B) {
			var held uint64
			for b.Loop() {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				h := &history{}
				for i := range historyLimit + historySlack {
					// Every result has strings of its own, as a real one.
					r := c.res
					r.At = time.Unix(int64(i), 0)
					r.Commit, r.Release = strings.Clone(r.Commit), strings.Clone(r.Release)
					r.Error, r.OutputTail = strings.Clone(r.Error), strings.Clone(r.OutputTail)
					h.add(deployOf(&r))
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				held = after.HeapAlloc - before.HeapAlloc
				runtime.KeepAlive(h)
			}
			b.ReportMetric(float64(held), "history-bytes")
			b.ReportMetric(float64(held)/historyLimit, "bytes/deploy")
		})
	}
}

// TestHistoryRecordsFollowsAndPanics: what Status.Last shows after a node
// followed its group's release without building, and after a deploy that
// panicked, is in the history too.
func TestHistoryRecordsFollowsAndPanics(t *testing.T) {
	t.Run("follow", func(t *testing.T) {
		g := newGroup(t)
		c1 := g.remote.commit(map[string]string{"index.html": "v1"})
		a, b := g.node("a"), g.node("b")
		g.waitServing(c1, a, b)
		followed := 0
		for _, n := range []*target{a, b} {
			waitFor(t, "the deploy in the history", func() bool { return len(n.History()) > 0 })
			last, h := n.Status().Last, n.History()[0]
			if h.Result != last.Result || h.Reason != last.Reason || h.Commit != c1 || h.Release != last.Release {
				t.Errorf("node %s: history %+v, last %+v", n.path, h, last)
			}
			if h.Reason == ReasonGroup {
				followed++
			}
		}
		if followed != 1 {
			t.Errorf("%d nodes have a follow of the group in their history, want 1", followed)
		}
	})
	t.Run("panic", func(t *testing.T) {
		r := newRemote(t)
		r.commit(map[string]string{"index.html": "v1"})
		fault, _ := panicOnce(FaultDeploy, "boom at start")
		tg := start(t, Config{Remote: r.bare}, fault)
		waitFor(t, "the panic in the history", func() bool {
			h := tg.History()
			return len(h) > 0 && h[0].Result == "error" && strings.Contains(h[0].Error, "boom at start") && h[0].Reason == ReasonStartup
		})
	})
}
