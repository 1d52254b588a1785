package githubtest

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// signJWT signs claims (JSON) with key, with header alg.
func signJWT(t *testing.T, key *rsa.PrivateKey, alg, claims string) string {
	t.Helper()
	enc := base64.RawURLEncoding
	head := enc.EncodeToString([]byte(`{"alg":"`+alg+`","typ":"JWT"}`)) + "." + enc.EncodeToString([]byte(claims))
	sum := sha256.Sum256([]byte(head))
	sig, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return head + "." + enc.EncodeToString(sig)
}

// clock is a settable clock for the server.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// TestApp: the app's operations take only a JWT signed with the app's key,
// with the right iss and times (anything else is a violation, answered
// 401); the access token operation issues tokens for the installation
// only; the repository's operations take only a current installation
// token: not the JWT, not an expired or revoked one.
func TestApp(t *testing.T) {
	key, _ := NewAppKey(t)
	other, _ := NewAppKey(t)
	c := &clock{now: time.Unix(1_800_000_000, 0)}
	s := Start(t, Options{App: &App{ID: 12, InstallationID: 34, Key: &key.PublicKey, TokenLifetime: 10 * time.Minute}, Now: c.Now})
	good := signJWT(t, key, "RS256", `{"iss":"12","iat":1799999940,"exp":1800000480}`)
	for _, tt := range []struct {
		name, jwt, violation string
	}{
		{"other key", signJWT(t, other, "RS256", `{"iss":"12","iat":1799999940,"exp":1800000480}`), "signature does not verify"},
		{"alg none", strings.Join(strings.Split(signJWT(t, key, "none", `{"iss":"12","iat":1799999940,"exp":1800000480}`), ".")[:2], ".") + ".", "alg"},
		{"other iss", signJWT(t, key, "RS256", `{"iss":"13","iat":1799999940,"exp":1800000480}`), "iss"},
		{"iat ahead", signJWT(t, key, "RS256", `{"iss":"12","iat":1800000060,"exp":1800000480}`), "in the future"},
		{"expired", signJWT(t, key, "RS256", `{"iss":"12","iat":1799999000,"exp":1799999500}`), "has passed"},
		{"too long", signJWT(t, key, "RS256", `{"iss":"12","iat":1799999940,"exp":1800000700}`), "more than 10 minutes"},
		{"no exp", signJWT(t, key, "RS256", `{"iss":"12","iat":1799999940}`), "missing"},
		{"not a JWT", "ghs_x", "three"},
	} {
		status, _, _ := send(t, s, "POST", "/app/installations/34/access_tokens", "", map[string]string{"Authorization": "Bearer " + tt.jwt})
		v := s.TakeViolations()
		if status != 401 || len(v) != 1 || !strings.Contains(v[0], tt.violation) {
			t.Errorf("%s: status %d, violations %q; want 401 and one naming %q", tt.name, status, v, tt.violation)
		}
	}
	bearer := map[string]string{"Authorization": "Bearer " + good}
	if status, _, body := send(t, s, "GET", "/repos/octo-org/site/installation", "", bearer); status != 200 || body["id"] != float64(34) || body["app_id"] != float64(12) {
		t.Errorf("installation: %d %v", status, body)
	}
	if status, _, _ := send(t, s, "POST", "/app/installations/35/access_tokens", "", bearer); status != 404 {
		t.Errorf("another installation: status %d, want 404", status)
	}
	if status, _, _ := send(t, s, "POST", "/app/installations/34/access_tokens", `{"repositories":["other"]}`, bearer); status != 422 {
		t.Errorf("a token for another repository: status %d, want 422", status)
	}
	status, _, body := send(t, s, "POST", "/app/installations/34/access_tokens", `{"repositories":["site"]}`, bearer)
	tok, _ := body["token"].(string)
	if status != 201 || !strings.HasPrefix(tok, "ghs_") || body["expires_at"] != "2027-01-15T08:10:00Z" {
		t.Fatalf("token: %d %v", status, body)
	}

	path := "/repos/octo-org/site/commits/" + sha + "/status"
	for _, tt := range []struct {
		name, auth string
		status     int
	}{{"none", "", 404}, {"the JWT", good, 401}, {"unknown", "ghs_unknown", 401}, {"current", tok, 200}} {
		hdr := map[string]string{"Authorization": ""}
		if tt.auth != "" {
			hdr["Authorization"] = "Bearer " + tt.auth
		}
		if status, _, _ := send(t, s, "GET", path, "", hdr); status != tt.status {
			t.Errorf("%s: status %d, want %d", tt.name, status, tt.status)
		}
	}
	c.advance(10 * time.Minute)
	if status, _, _ := send(t, s, "GET", path, "", map[string]string{"Authorization": "Bearer " + tok}); status != 401 || s.CurrentToken(tok) {
		t.Errorf("expired token: status %d, want 401", status)
	}
	c.now = time.Unix(1_800_000_000, 0)
	s.RevokeInstallationTokens()
	if status, _, _ := send(t, s, "GET", path, "", map[string]string{"Authorization": "Bearer " + tok}); status != 401 {
		t.Errorf("revoked token: status %d, want 401", status)
	}
	if v := s.TakeViolations(); len(v) != 0 {
		t.Errorf("violations %q", v)
	}
}

// TestGitServer: git clones from the GitServer with a current installation
// token only.
func TestGitServer(t *testing.T) {
	key, _ := NewAppKey(t)
	s := Start(t, Options{App: &App{Key: &key.PublicKey}})
	root := t.TempDir()
	git := func(dir string, env []string, args ...string) error {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), append(env, "GIT_TERMINAL_PROMPT=0", "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL="+os.DevNull)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Logf("git %v: %s", args, out)
		}
		return err
	}
	if err := git(root, nil, "init", "--quiet", "--bare", "site.git"); err != nil {
		t.Fatal(err)
	}
	g := s.StartGit(t, root)
	g.Trust(t)
	s.mu.Lock()
	s.tokens = append(s.tokens, &InstallationToken{Token: "ghs_good", ExpiresAt: time.Now().Add(time.Hour)},
		&InstallationToken{Token: "ghs_old", ExpiresAt: time.Now().Add(-time.Second)})
	s.mu.Unlock()
	for _, tt := range []struct {
		token string
		ok    bool
	}{{"ghs_good", true}, {"ghs_old", false}, {"ghs_made_up", false}} {
		u := strings.Replace(g.URL(), "https://", "https://x-access-token:"+tt.token+"@", 1) + "/site.git"
		err := git(t.TempDir(), nil, "ls-remote", u)
		if (err == nil) != tt.ok {
			t.Errorf("ls-remote with %s: error %v, want success %v", tt.token, err, tt.ok)
		}
	}
	var accepted []string
	for _, a := range g.Auth() {
		if a.Accepted {
			accepted = append(accepted, a.Password)
		}
	}
	if len(accepted) == 0 || strings.Join(accepted, ",") != strings.Repeat("ghs_good,", len(accepted)-1)+"ghs_good" {
		t.Errorf("accepted %q, want only the current token", accepted)
	}
}
