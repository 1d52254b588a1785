package caddywebhook

import "testing"

// TestForgeWeb: each forge's page of a commit and of a pull request, as
// the status page and notifications link them, from the handler's forge
// setting; nothing for what is not a repository or a commit, or for a
// forge without a base URL.
func TestForgeWeb(t *testing.T) {
	const sha = "1a2b3c4d1a2b3c4d1a2b3c4d1a2b3c4d1a2b3c4d"
	for _, c := range []struct {
		name          string
		forge, url    string
		repo, commit  string
		number        int
		wantC, wantPR string
	}{
		{"github", "", "", "octocat/blog", sha, 7,
			"https://github.com/octocat/blog/commit/" + sha, "https://github.com/octocat/blog/pull/7"},
		{"github enterprise", "github", "https://ghe.example.com/", "team/site", sha, 7,
			"https://ghe.example.com/team/site/commit/" + sha, "https://ghe.example.com/team/site/pull/7"},
		{"gitea", "gitea", "https://git.example.com", "me/site", sha, 3,
			"https://git.example.com/me/site/commit/" + sha, "https://git.example.com/me/site/pulls/3"},
		{"forgejo under a path", "forgejo", "https://example.com/git", "me/site", sha, 3,
			"https://example.com/git/me/site/commit/" + sha, "https://example.com/git/me/site/pulls/3"},
		{"gitlab.com", "gitlab", "", "me/site", sha, 12,
			"https://gitlab.com/me/site/-/commit/" + sha, "https://gitlab.com/me/site/-/merge_requests/12"},
		{"gitlab self-hosted", "gitlab", "https://gitlab.example.com", "me/site", sha, 12,
			"https://gitlab.example.com/me/site/-/commit/" + sha, "https://gitlab.example.com/me/site/-/merge_requests/12"},
		{"bitbucket", "bitbucket", "", "team/site", sha, 5,
			"https://bitbucket.org/team/site/commits/" + sha, "https://bitbucket.org/team/site/pull-requests/5"},
		{"bitbucket with a base URL", "bitbucket", "http://127.0.0.1:8080", "team/site", sha, 5,
			"https://bitbucket.org/team/site/commits/" + sha, "https://bitbucket.org/team/site/pull-requests/5"},
		{"sha-256 commit", "", "", "octocat/blog", sha + "1a2b3c4d1a2b3c4d1a2b3c4d", 1,
			"https://github.com/octocat/blog/commit/" + sha + "1a2b3c4d1a2b3c4d1a2b3c4d", "https://github.com/octocat/blog/pull/1"},
		{"gitea without a base URL", "gitea", "", "me/site", sha, 3, "", ""},
		{"not a commit", "", "", "octocat/blog", "main", 0, "", ""},
		{"short commit", "", "", "octocat/blog", sha[:12], -1, "", ""},
		{"upper-case commit", "", "", "octocat/blog", "1A2B3C4D1A2B3C4D1A2B3C4D1A2B3C4D1A2B3C4D", 0, "", ""},
		{"not owner/name", "", "", "octocat", sha, 7, "", ""},
		{"a dot-dot segment", "", "", "../blog", sha, 7, "", ""},
		{"markup in repo", "", "", `octocat/"><b>`, sha, 7, "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := &Handler{Forge: c.forge, ForgeURL: c.url, Repo: c.repo}
			web := h.forgeWeb()
			if got := web.Commit(c.repo, c.commit); got != c.wantC {
				t.Errorf("Commit = %q, want %q", got, c.wantC)
			}
			if got := web.PullRequest(c.repo, c.number); got != c.wantPR {
				t.Errorf("PullRequest = %q, want %q", got, c.wantPR)
			}
		})
	}
}
