package delivery

import (
	"reflect"
	"testing"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/testkit"
)

// TestGitHubPullRequest: GitHub's pull_request deliveries, as they come
// (in pieces too), read into a PullRequestEvent; a fork is a head in
// another repository; a number that is not one is refused.
func TestGitHubPullRequest(t *testing.T) {
	const head = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
	want := func(action, label string) *PullRequestEvent {
		return &PullRequestEvent{Number: 2, Action: action, Base: "master", Head: head,
			HeadRepository: "Codertocat/Hello-World", Label: label}
	}
	for _, tc := range []struct {
		name string
		want *PullRequestEvent
	}{
		{"pull_request-opened.json", want("opened", "")},
		{"pull_request-reopened.json", want("reopened", "")},
		{"pull_request-synchronize.json", want("synchronize", "")},
		{"pull_request-closed.json", want("closed", "")},
		{"pull_request-labeled.json", want("labeled", "bug")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := fixture(t, tc.name)
			for _, step := range []int{0, 1, 7} {
				ev, err := read(t, Push|PullRequest, "pull_request", "application/json", testSecret, body, step)
				if err != nil {
					t.Fatalf("step %d: %v", step, err)
				}
				if ev.Kind != PullRequest || ev.Repository != "Codertocat/Hello-World" {
					t.Fatalf("step %d: %+v", step, ev)
				}
				got := *ev.PullRequest
				w := *tc.want
				// The fixtures' own numbers and heads, whatever they are.
				w.Head, w.Number = got.Head, got.Number
				if got.Number <= 0 || len(got.Head) != 40 || !reflect.DeepEqual(got, w) {
					t.Errorf("step %d: got %+v, want %+v", step, got, w)
				}
			}
		})
	}

	t.Run("fork", func(t *testing.T) {
		body, err := testkit.Fixture("pull_request-labeled.json", func(p map[string]any) {
			p["pull_request"].(map[string]any)["head"].(map[string]any)["repo"].(map[string]any)["full_name"] = "someone/Hello-World"
			p["number"] = 12345
			p["pull_request"].(map[string]any)["draft"] = true
		})
		if err != nil {
			t.Fatal(err)
		}
		ev, err := read(t, PullRequest, "pull_request", "application/json", testSecret, body, 3)
		if err != nil {
			t.Fatal(err)
		}
		if pr := ev.PullRequest; !pr.Fork || pr.HeadRepository != "someone/Hello-World" || pr.Number != 12345 || !pr.Draft {
			t.Errorf("fork: %+v", pr)
		}
	})

	t.Run("not asked for", func(t *testing.T) {
		ev, err := read(t, Push, "pull_request", "application/json", testSecret, fixture(t, "pull_request-opened.json"), 0)
		if err != nil || ev.Kind != Other || ev.PullRequest != nil {
			t.Errorf("got %+v, %v; want Other", ev, err)
		}
	})

	for _, bad := range []any{"2", 2.5, -1, 0, 1e30} {
		body, _ := testkit.Fixture("pull_request-opened.json", func(p map[string]any) { p["number"] = bad })
		if _, err := read(t, PullRequest, "pull_request", "application/json", testSecret, body, 0); err == nil {
			t.Errorf("number %v was accepted", bad)
		}
	}
}
