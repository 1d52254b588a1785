package deployer

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// gatedBuild is a build command that prints a line, waits until the file
// gate exists, prints another and ends.
func gatedBuild(gate string) [][]string {
	return [][]string{{"sh", "-c", `echo "first line"; while [ ! -e "` + gate + `" ]; do sleep 0.05; done; echo "second line"`}}
}

// waitBuilding waits until a deploy runs with its release named.
func (tg *target) waitBuilding() string {
	tg.t.Helper()
	var name string
	waitFor(tg.t, "a build to run", func() bool {
		if r := tg.Status().Running; r != nil {
			name = r.Release
		}
		return name != ""
	})
	return name
}

// TestBuildLogFollowsTheRunningBuild: following the running build's log
// gives its first line while the build still runs, then the rest, then
// io.EOF once the build ended; afterwards the same log reads whole without
// follow, by its release's name.
func TestBuildLogFollowsTheRunningBuild(t *testing.T) {
	r := newRemote(t)
	tip := r.commit(map[string]string{"index.html": "v1"})
	gate := filepath.Join(t.TempDir(), "gate")
	tg := start(t, Config{Remote: r.bare, Repo: "octocat/blog", Branch: "main", Commands: gatedBuild(gate)})
	name := tg.waitBuilding()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got, rc, err := tg.BuildLog(ctx, "", true)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if got != name {
		t.Errorf("BuildLog chose release %q, want the running %q", got, name)
	}
	lines := bufio.NewScanner(rc)
	for lines.Scan() && lines.Text() != "first line" {
	}
	if lines.Text() != "first line" {
		t.Fatalf("the log ended before the first line: %v", lines.Err())
	}
	if s := tg.Status(); s.Running == nil || s.Running.Release != name {
		t.Fatalf("the first line came only after the build ended: %+v", s.Running)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var rest []string
	for lines.Scan() {
		rest = append(rest, lines.Text())
	}
	if err := lines.Err(); err != nil {
		t.Fatalf("following the log: %v", err)
	}
	if !strings.Contains(strings.Join(rest, "\n"), "second line") {
		t.Errorf("after the gate, the log gave %q", rest)
	}
	tg.waitLive(tip)

	_, whole, err := tg.BuildLog(ctx, name, false)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(whole)
	whole.Close()
	if s := string(b); !strings.Contains(s, "first line\n") || !strings.Contains(s, "second line\n") {
		t.Errorf("the log of %s reads %q", name, s)
	}
}

// TestBuildLogEnds: a follow ends when its context does, or when the reader
// is closed, while the build still runs.
func TestBuildLogEnds(t *testing.T) {
	r := newRemote(t)
	r.commit(map[string]string{"index.html": "v1"})
	gate := filepath.Join(t.TempDir(), "gate")
	tg := start(t, Config{Remote: r.bare, Repo: "octocat/blog", Branch: "main", Commands: gatedBuild(gate)})
	defer os.WriteFile(gate, nil, 0o644)
	tg.waitBuilding()

	t.Run("context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		_, rc, err := tg.BuildLog(ctx, "", true)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		time.AfterFunc(50*time.Millisecond, cancel)
		if _, err := io.ReadAll(rc); !errors.Is(err, context.Canceled) {
			t.Errorf("reading after the context ended: %v", err)
		}
	})
	t.Run("close", func(t *testing.T) {
		_, rc, err := tg.BuildLog(context.Background(), "", true)
		if err != nil {
			t.Fatal(err)
		}
		time.AfterFunc(50*time.Millisecond, func() { rc.Close() })
		if _, err := io.ReadAll(rc); !errors.Is(err, os.ErrClosed) {
			t.Errorf("reading after Close: %v", err)
		}
	})
}

// TestBuildLogOfAFailedBuild: with no build running, the log is the last
// deploy's, a failed build's too (its release is gone, its log kept); names
// that are not a release, or a release without a log, are errors.
func TestBuildLogOfAFailedBuild(t *testing.T) {
	r := newRemote(t)
	tip := r.commit(map[string]string{"index.html": "v1"})
	tg := start(t, Config{Remote: r.bare, Repo: "octocat/blog", Branch: "main",
		Commands: [][]string{{"sh", "-c", "echo the build broke; exit 3"}}})
	last := tg.waitResult("error", tip).Last

	name, rc, err := tg.BuildLog(context.Background(), "", true)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc) // follow on a build that ended: EOF at the end
	rc.Close()
	if err != nil || name != last.Release || !strings.Contains(string(b), "the build broke") {
		t.Errorf("BuildLog = %q, %q, %v; want the failed %s's log", name, b, err, last.Release)
	}
	for _, tc := range []struct {
		release string
		want    error
	}{
		{"20200101T000000Z-000000000000", ErrNoBuildLog},
		{"../state", ErrUnknownRelease},
		{"..", ErrUnknownRelease},
		{"/etc/passwd", ErrUnknownRelease},
	} {
		if _, _, err := tg.BuildLog(context.Background(), tc.release, false); !errors.Is(err, tc.want) {
			t.Errorf("BuildLog(%q): %v, want %v", tc.release, err, tc.want)
		}
	}
}
