package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/testkit"
)

// pushMain is "demo push": it commits a new post to the running demo's
// repository and sends a signed push delivery for it.
func pushMain(args []string) error {
	fs := flag.NewFlagSet("push", flag.ExitOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: go run ./cmd/demo push -dir <folder> <post title>\n\nFlags:\n")
		fs.PrintDefaults()
	}
	dir := fs.String("dir", "", "the folder the running demo printed")
	fs.Parse(args)
	if *dir == "" || fs.NArg() == 0 {
		fs.Usage()
		return errors.New("need -dir and a post title")
	}
	title := strings.TrimSpace(strings.Join(fs.Args(), " "))
	if title == "" {
		return errors.New("the post title is empty")
	}

	b, err := os.ReadFile(filepath.Join(*dir, stateFile))
	if err != nil {
		return fmt.Errorf("is the demo running? %w", err)
	}
	var st demoState
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("reading %s: %w", stateFile, err)
	}

	repo := &testkit.Repo{Work: st.Work, Branch: st.Branch}
	before, err := repo.Git("rev-parse", "HEAD")
	if err != nil {
		return err
	}
	postURL, err := addPost(st, title)
	if err != nil {
		return fmt.Errorf("writing the post: %w", err)
	}
	after, err := repo.Commit("Add post: "+title, nil)
	if err != nil {
		return err
	}
	fmt.Printf("committed %s \"Add post: %s\" and pushed it to the demo repository\n", after[:12], title)

	payload, err := testkit.PushPayload(testkit.Push{
		Repo: st.Repo, Branch: st.Branch, Before: before, After: after, Message: "Add post: " + title,
	})
	if err != nil {
		return err
	}
	delivery := testkit.Delivery{Event: "push", Secret: st.Secret, Body: payload}
	status, answer, err := delivery.Send(&http.Client{Timeout: 30 * time.Second}, st.WebhookURL)
	if err != nil {
		return err
	}
	fmt.Printf("sent a signed push delivery to %s: %d %s\n", st.WebhookURL, status, answer)
	if status != http.StatusAccepted {
		return fmt.Errorf("the delivery was not queued (%d)", status)
	}

	want := title
	if st.Kind == "html" {
		want = html.EscapeString(title)
	} else {
		want = hugoEscape(title)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), deployWait)
	defer cancel()
	for {
		if err := checkPage(st.URL, want); err == nil && checkPage(postURL, want) == nil {
			fmt.Printf("live after %.1fs: %s\n", time.Since(start).Seconds(), postURL)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the post is not live after %s; see the demo's output and %s", deployWait, st.Log)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// addPost writes a new post titled title into the working copy and returns
// its URL: /posts/<slug>/ of the Hugo blog, or /#<slug> of the HTML site,
// the slug made of the title (with -2, -3... when taken).
func addPost(st demoState, title string) (string, error) {
	now := time.Now().UTC()
	if st.Kind == "hugo" {
		posts := filepath.Join(st.Work, "content", "posts")
		name := freeSlug(slug(title), func(s string) bool {
			_, err := os.Stat(filepath.Join(posts, s+".md"))
			return err == nil
		})
		post := fmt.Sprintf("---\ntitle: %s\ndate: %s\n---\nPublished with `go run ./cmd/demo push`.\n",
			strconv.Quote(title), now.Format(time.RFC3339))
		return st.URL + "posts/" + name + "/", os.WriteFile(filepath.Join(posts, name+".md"), []byte(post), 0o644)
	}
	index := filepath.Join(st.Work, "index.html")
	b, err := os.ReadFile(index)
	if err != nil {
		return "", err
	}
	const marker = "<!-- new posts go here -->"
	if !bytes.Contains(b, []byte(marker)) {
		return "", fmt.Errorf("%s has no %q", index, marker)
	}
	id := freeSlug(slug(title), func(s string) bool { return bytes.Contains(b, []byte(`id="`+s+`"`)) })
	item := marker + "\n<li id=\"" + id + "\">" + html.EscapeString(title) + "</li>"
	return st.URL + "#" + id, os.WriteFile(index, bytes.Replace(b, []byte(marker), []byte(item), 1), 0o644)
}

// freeSlug returns s, or s-2, s-3... the first that taken says is not.
func freeSlug(s string, taken func(string) bool) string {
	name := s
	for n := 2; taken(name); n++ {
		name = fmt.Sprintf("%s-%d", s, n)
	}
	return name
}

var nonSlug = regexp.MustCompile(`[^a-z0-9]+`)

// slug makes a file name out of a title.
func slug(title string) string {
	s := strings.Trim(nonSlug.ReplaceAllString(strings.ToLower(title), "-"), "-")
	if len(s) > 40 {
		s = s[:40]
	}
	if s == "" {
		s = "post"
	}
	return s
}

// hugoEscape escapes a title as Hugo's minified HTML shows it.
func hugoEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;").Replace(s)
}
