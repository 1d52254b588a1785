package deployer

import (
	"context"
	"fmt"
	"strings"
)

// TokenSource gives git a token for each command that talks to the remote,
// in place of a static Config.Token: short-lived tokens, such as a GitHub
// App's installation tokens, which expire within an hour. The token goes
// where Token goes, and nowhere else: only to the credential helper's
// socket, for Remote's host (see Config.Token).
type TokenSource interface {
	// Token returns the token for one git command (a fetch, an ls-remote,
	// a submodule update), asked right before the command starts, on the
	// deployer's worker goroutine. Its error must not hold a token; it
	// fails the fetch, which is retried as when the remote is down.
	Token(ctx context.Context) (string, error)

	// Failed tells the source that a command given token failed: the
	// remote may have refused it (revoked, or expired early). The source
	// should not hand that token out again. Any failure is told, a network
	// error too: a new token then costs one more request to the forge,
	// once per failed fetch, and the deployer's retries are spaced out.
	Failed(token string)
}

// tokenForCommand returns the token of one command that talks to the remote: Token,
// or a fresh one of tokens. It remembers what it handed out, for scrub.
func (g *git) tokenForCommand(ctx context.Context) (string, error) {
	if g.tokens == nil {
		return g.token, nil
	}
	t, err := g.tokens.Token(ctx)
	if err != nil {
		return "", fmt.Errorf("getting a token for git: %w", err)
	}
	if t == "" || strings.ContainsAny(t, "\x00\r\n") {
		return "", fmt.Errorf("getting a token for git: not a token")
	}
	g.mu.Lock()
	if len(g.handed) == 0 || g.handed[len(g.handed)-1] != t {
		g.handed = append(g.handed, t)
	}
	g.mu.Unlock()
	return t, nil
}

// scrubHanded removes from s the tokens that tokens handed out.
func (g *git) scrubHanded(s string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, t := range g.handed {
		s = strings.ReplaceAll(s, t, "[token]")
	}
	return s
}
