package testkit

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// LogEntry is one line of Caddy's JSON log.
type LogEntry struct {
	Level  string         // "debug", "info", "warn", "error"...
	Logger string         // for example "http.handlers.github_webhook"
	Msg    string         // the message
	Fields map[string]any // every field of the line, those above included
}

// Str returns the field key when it is a string, and "" otherwise.
func (e LogEntry) Str(key string) string {
	s, _ := e.Fields[key].(string)
	return s
}

// From reports whether e was written by the logger named prefix or by one
// of its children ("http.handlers.github_webhook" covers its named loggers).
func (e LogEntry) From(prefix string) bool {
	return e.Logger == prefix || strings.HasPrefix(e.Logger, prefix+".")
}

// ParseLog reads Caddy's JSON log from r and returns its entries in order.
// Lines that are not JSON objects (Caddy prints a few plain lines before its
// logging starts) are skipped.
func ParseLog(r io.Reader) ([]LogEntry, error) {
	var out []LogEntry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var fields map[string]any
		if json.Unmarshal(sc.Bytes(), &fields) != nil {
			continue
		}
		e := LogEntry{Fields: fields}
		e.Level, _ = fields["level"].(string)
		e.Logger, _ = fields["logger"].(string)
		e.Msg, _ = fields["msg"].(string)
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("reading the log: %w", err)
	}
	return out, nil
}
