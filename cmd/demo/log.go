package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// logEntry is the part of a line of Caddy's JSON log the demo shows.
type logEntry struct {
	Level      string `json:"level"`
	Logger     string `json:"logger"`
	Msg        string `json:"msg"`
	Commit     string `json:"commit"`
	Release    string `json:"release"`
	Reason     string `json:"reason"`
	Error      string `json:"error"`
	OutputTail string `json:"output_tail"`
	Duration   any    `json:"duration"`
	Delivery   string `json:"delivery"`
	Event      string `json:"event"`
	Result     string `json:"result"`
	Status     int    `json:"status"`
}

// logFollower reads Caddy's log file as it grows.
type logFollower struct {
	path    string
	f       *os.File
	partial []byte
}

func newLogFollower(path string) *logFollower { return &logFollower{path: path} }

// errExited is next's error when Caddy exited.
var errExited = errors.New("exited")

// next reads log lines of the github_webhook handler until one satisfies
// stop, and returns it. Every line read is passed to show, if set. It ends
// with ctx's error when ctx ends first, and with errExited once exited is
// closed and the log read to its end.
func (l *logFollower) next(ctx context.Context, exited <-chan struct{}, stop func(logEntry) bool, show func(logEntry)) (logEntry, error) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		gone := false
		select {
		case <-exited:
			gone = true // what it wrote last is read below
		default:
		}
		for _, e := range l.read() {
			if !strings.HasPrefix(e.Logger, "http.handlers.github_webhook") {
				continue
			}
			if show != nil {
				show(e)
			}
			if stop(e) {
				return e, nil
			}
		}
		if gone {
			return logEntry{}, errExited
		}
		select {
		case <-ctx.Done():
			return logEntry{}, ctx.Err()
		case <-tick.C:
		}
	}
}

// read returns the complete lines written since the last call.
func (l *logFollower) read() []logEntry {
	if l.f == nil {
		f, err := os.Open(l.path)
		if err != nil {
			return nil
		}
		l.f = f
	}
	b, _ := io.ReadAll(l.f)
	l.partial = append(l.partial, b...)
	var out []logEntry
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		line := l.partial[:i]
		var e logEntry
		if json.Unmarshal(line, &e) == nil {
			out = append(out, e)
		}
		l.partial = l.partial[i+1:]
	}
	return out
}

// printEntry prints a log entry for a person watching the demo.
func printEntry(e logEntry) {
	now := time.Now().Format("15:04:05")
	switch e.Msg {
	case "delivery":
		fmt.Printf("%s  delivery %s: %s event, answered %d %s\n", now, short(e.Delivery, 8), e.Event, e.Status, e.Result)
	case "deploying":
		fmt.Printf("%s  deploying commit %s (%s)\n", now, short(e.Commit, 12), e.Reason)
	case "deploy succeeded":
		fmt.Printf("%s  live: commit %s in %s, release %s\n", now, short(e.Commit, 12), seconds(e.Duration), e.Release)
	case "deploy failed":
		fmt.Printf("%s  deploy FAILED (the live site stays): %s\n", now, e.Error)
		if e.OutputTail != "" {
			sc := bufio.NewScanner(strings.NewReader(e.OutputTail))
			for sc.Scan() {
				fmt.Println("      |", sc.Text())
			}
		}
	default:
		if e.Level == "warn" || e.Level == "error" || e.Level == "info" {
			fmt.Printf("%s  %s\n", now, e.Msg)
		}
	}
}

func short(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// seconds formats a zap duration field as Caddy's log encodes it (float
// seconds by default).
func seconds(d any) string {
	switch v := d.(type) {
	case float64:
		return fmt.Sprintf("%.1fs", v)
	case string:
		return v
	default:
		return fmt.Sprint(v)
	}
}
