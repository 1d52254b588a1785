package caddywebhook

import (
	"regexp"
	"strconv"
)

// forgeWeb is where a forge shows a repository's pages to people: the
// status page and notifications link a commit and a pull request there.
type forgeWeb struct {
	Kind string // one of the forge constants
	Base string // the forge's base URL without a trailing slash; "" links nothing
}

// forgeWeb returns where the handler's forge shows pages: forge and its
// base URL (GitHub Enterprise Server: forge github https://ghe.example.com).
// Gitea and Forgejo without a base URL link nothing; Bitbucket is
// bitbucket.org's, as its API is. The remote is not consulted: a delivery
// names the repository on the forge that signed it, wherever the commits
// are fetched from.
func (h *Handler) forgeWeb() forgeWeb {
	if h.forgeKind() == forgeBitbucket {
		return forgeWeb{Kind: forgeBitbucket, Base: "https://bitbucket.org"}
	}
	return forgeWeb{Kind: h.forgeKind(), Base: h.forgeBase()}
}

var (
	repoName  = regexp.MustCompile(`^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$`)
	commitHex = regexp.MustCompile(`^[0-9a-f]{40}([0-9a-f]{24})?$`)
	dotsOnly  = regexp.MustCompile(`(^|/)\.+(/|$)`)
)

// page returns Base/repo/suffix, or "" when repo is not what a forge
// names that way or the forge has no base URL.
func (f forgeWeb) page(repo, suffix string) string {
	if f.Base == "" || !repoName.MatchString(repo) || dotsOnly.MatchString(repo) {
		return ""
	}
	return f.Base + "/" + repo + suffix
}

// Commit returns the page of commit in repo: <base>/<repo>/commit/<sha>
// on GitHub, Gitea and Forgejo, <base>/<repo>/-/commit/<sha> on GitLab,
// <base>/<repo>/commits/<sha> on Bitbucket; "" when repo or commit is not
// one, or the forge is unknown.
func (f forgeWeb) Commit(repo, commit string) string {
	if !commitHex.MatchString(commit) {
		return ""
	}
	switch f.Kind {
	case forgeGitHub, forgeGitea, forgeForgejo:
		return f.page(repo, "/commit/"+commit)
	case forgeGitLab:
		return f.page(repo, "/-/commit/"+commit)
	case forgeBitbucket:
		return f.page(repo, "/commits/"+commit)
	}
	return ""
}

// PullRequest returns the page of pull request number in repo (GitLab:
// its merge request); "" as Commit.
func (f forgeWeb) PullRequest(repo string, number int) string {
	if number <= 0 {
		return ""
	}
	n := strconv.Itoa(number)
	switch f.Kind {
	case forgeGitHub:
		return f.page(repo, "/pull/"+n)
	case forgeGitea, forgeForgejo:
		return f.page(repo, "/pulls/"+n)
	case forgeGitLab:
		return f.page(repo, "/-/merge_requests/"+n)
	case forgeBitbucket:
		return f.page(repo, "/pull-requests/"+n)
	}
	return ""
}
