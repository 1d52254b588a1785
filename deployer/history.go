package deployer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
)

// The deploy history: every result that Status.Last shows, kept for the
// status page and the command line, newest last in memory and in
// Path/history.jsonl. Its memory is bounded by these, whatever the number
// of deploys:
const (
	// historyName is the history's file in Path: one JSON object a line,
	// appended as deploys end, rewritten with the newest historyLimit
	// entries once it holds historySlack lines more.
	historyName = "history.jsonl"
	// historyLimit is how many deploys are kept.
	historyLimit = 1000
	// historySlack is how many lines past historyLimit the file may hold
	// before it is compacted: one rewrite every historySlack deploys.
	historySlack = 100
	// historyInStatus is how many of the newest deploys Status holds,
	// without their output tails, to keep the admin API's answer small.
	historyInStatus = 20
	// historyErrorMax is the most bytes of an error a deploy keeps.
	historyErrorMax = 1 << 10
	// historyTails is how many of the newest failed deploys keep their
	// output tail (at most tailSize bytes each); older ones drop it.
	historyTails = 10
)

// Deploy is one deploy of the history: a result as Status.Last showed it
// when the deploy ended.
type Deploy struct {
	Result  string    `json:"result"` // "ok" or "error"
	Reason  Reason    `json:"reason"`
	Commit  string    `json:"commit,omitempty"`
	Release string    `json:"release,omitempty"` // "" when the fetch failed
	Started time.Time `json:"started"`
	// Duration is the fetch and the build together, in seconds in JSON.
	Duration Seconds `json:"duration"`
	// Error is cut to 1 KiB.
	Error string `json:"error,omitempty"`
	// OutputTail is the end of a failed build's output; only the 10
	// newest failed deploys keep it.
	OutputTail string `json:"output_tail,omitempty"`
	// Repeated counts the failed fetches with the same error that came
	// right after this one: a remote that stays down is one entry, not
	// one per retry. Started and Duration are the first one's.
	Repeated int `json:"repeated,omitempty"`
}

// historyRecord is a deploy as stored in historyName: a format of its own,
// versioned, so that Deploy may change without making old files unreadable.
type historyRecord struct {
	V          int       `json:"v"` // 1
	Result     string    `json:"result"`
	Reason     string    `json:"reason"`
	Commit     string    `json:"commit,omitempty"`
	Release    string    `json:"release,omitempty"`
	Started    time.Time `json:"started"`
	Duration   float64   `json:"duration"` // seconds
	Error      string    `json:"error,omitempty"`
	OutputTail string    `json:"output_tail,omitempty"`
	Repeated   int       `json:"repeated,omitempty"`
}

func (r historyRecord) deploy() Deploy {
	return Deploy{Result: r.Result, Reason: Reason(r.Reason), Commit: r.Commit, Release: r.Release,
		Started: r.Started, Duration: Seconds(math.Round(r.Duration * float64(time.Second))),
		Error: cut(r.Error, historyErrorMax), OutputTail: lastBytes(r.OutputTail, tailSize), Repeated: r.Repeated}
}

func recordOf(e Deploy) historyRecord {
	return historyRecord{V: 1, Result: e.Result, Reason: string(e.Reason), Commit: e.Commit, Release: e.Release,
		Started: e.Started, Duration: time.Duration(e.Duration).Seconds(), Error: e.Error, OutputTail: e.OutputTail,
		Repeated: e.Repeated}
}

// history is a Deployer's deploy history. Only the worker goroutine adds
// to it; Status and History read it.
type history struct {
	mu    sync.Mutex
	limit int
	list  []Deploy // oldest first; at most limit
	lines int      // lines in the file
	file  string   // the file; "" until loaded, and nothing is written
}

// record adds res, the result of a deploy that just ended, to the history,
// and appends it to the history's file.
func (d *Deployer) record(res *Result) {
	if err := d.hist.add(deployOf(res)); err != nil {
		d.log().Warn("writing the deploy history", zap.Error(err))
	}
}

// deployOf is res as the history keeps it.
func deployOf(res *Result) Deploy {
	return Deploy{Result: res.Result, Reason: res.Reason, Commit: res.Commit, Release: res.Release,
		Started: res.At.Add(-time.Duration(res.Duration)).Round(0).UTC(), Duration: res.Duration,
		Error: cut(res.Error, historyErrorMax), OutputTail: lastBytes(res.OutputTail, tailSize)}
}

// History returns every deploy kept, newest first, with the output tails
// of the newest failed ones.
func (d *Deployer) History() []Deploy {
	return d.hist.newest(0, true)
}

// newest returns up to n deploys (all when n is 0), newest first, without
// their output tails unless tails.
func (h *history) newest(n int, tails bool) []Deploy {
	h.mu.Lock()
	defer h.mu.Unlock()
	if n <= 0 || n > len(h.list) {
		n = len(h.list)
	}
	out := make([]Deploy, 0, n)
	for i := len(h.list) - 1; i >= len(h.list)-n; i-- {
		e := h.list[i]
		if !tails {
			e.OutputTail = ""
		}
		out = append(out, e)
	}
	return out
}

// merge adds e to the list in memory, and reports whether it replaced the
// newest entry (a repeated fetch failure) rather than adding one.
func (h *history) merge(e Deploy) (replaced bool) {
	if n := len(h.list); n > 0 {
		last := &h.list[n-1]
		switch {
		case e.Repeated > 0 && e.Started.Equal(last.Started):
			// A repeat as read back from the file: it replaces the line
			// before it.
			*last = e
			return true
		case e.Result == "error" && e.Release == "" && last.Result == "error" && last.Release == "" &&
			e.Error == last.Error && e.Repeated == 0:
			last.Repeated++
			return true
		}
	}
	h.list = append(h.list, e)
	if over := len(h.list) - h.limit; over > 0 {
		h.list = slices.Delete(h.list, 0, over)
	}
	// Only the newest historyTails failures keep their output.
	if e.OutputTail != "" {
		kept := 0
		for i := len(h.list) - 1; i >= 0; i-- {
			if h.list[i].OutputTail == "" {
				continue
			}
			if kept++; kept > historyTails {
				h.list[i].OutputTail = ""
			}
		}
	}
	return false
}

// add adds e, and appends it (or, for a repeat, the entry it changed) to
// the file, which is compacted when it holds historySlack lines too many.
func (h *history) add(e Deploy) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.limit == 0 {
		h.limit = historyLimit
	}
	if h.merge(e) {
		e = h.list[len(h.list)-1]
	}
	if h.file == "" {
		return nil
	}
	if h.lines >= h.limit+historySlack {
		return h.compact()
	}
	b, err := json.Marshal(recordOf(e))
	if err != nil {
		return err
	}
	f, err := os.OpenFile(h.file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("appending to %s: %w", historyName, err)
	}
	h.lines++
	return nil
}

// compact rewrites the file with the list, atomically. h.mu is held.
func (h *history) compact() error {
	var buf bytes.Buffer
	for _, e := range h.list {
		b, err := json.Marshal(recordOf(e))
		if err != nil {
			return err
		}
		buf.Write(append(b, '\n'))
	}
	tmp, err := os.CreateTemp(filepath.Dir(h.file), ".history-*.tmp")
	if err != nil {
		return fmt.Errorf("compacting %s: %w", historyName, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(buf.Bytes())
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), h.file)
	}
	if err != nil {
		return fmt.Errorf("compacting %s: %w", historyName, err)
	}
	h.lines = len(h.list)
	return nil
}

// load reads the history's file in dir, which add writes from then on. A
// missing file is an empty history; a line that does not parse (the last
// one, torn by a crash) is dropped, and the file compacted without it; a
// temporary file of a compaction that a crash interrupted is removed.
func (h *history) load(dir string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.limit == 0 {
		h.limit = historyLimit
	}
	h.file = filepath.Join(dir, historyName)
	// What a crash during a compaction left.
	if left, _ := filepath.Glob(filepath.Join(dir, ".history-*.tmp")); len(left) > 0 {
		for _, name := range left {
			os.Remove(name)
		}
	}
	f, err := os.Open(h.file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", historyName, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	// A line holds at most an error and an output tail, cut to their
	// bounds, and a few short fields.
	sc.Buffer(nil, 64<<10)
	bad := false
	for sc.Scan() {
		h.lines++
		var r historyRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil || r.V != 1 {
			bad = true
			continue
		}
		h.merge(r.deploy())
	}
	if err := sc.Err(); err != nil {
		bad = true
	}
	if bad || h.lines > h.limit+historySlack {
		return h.compact()
	}
	return nil
}

// cut returns s cut to at most n bytes, on a character's boundary, with
// "…" at the end when something was cut.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n - len("…")
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

// lastBytes returns the last n bytes of s at most, from a character's
// boundary.
func lastBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := len(s) - n
	for i < len(s) && !utf8.RuneStart(s[i]) {
		i++
	}
	return s[i:]
}
