package githubtest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// App makes the Server play a GitHub App installed on its repository
// (Options.App). Then:
//
//   - GET /repos/{owner}/{repo}/installation and POST
//     /app/installations/{installation_id}/access_tokens take only a JWT
//     that the app's key signed (RS256), with iss the app's ID, iat not in
//     the future, exp in the future and at most 10 minutes after iat (and
//     after now), as GitHub checks it; a JWT that is not so is a violation,
//     answered 401;
//   - the access token operation issues a new installation token
//     ("ghs_..."), which expires after TokenLifetime;
//   - every other operation of the repository takes only an installation
//     token that is current: issued, neither expired nor revoked (none:
//     404, as for a private repository; another: 401). Options.Token does
//     not apply.
type App struct {
	// ID is the app's ID, the JWT's iss. Default 424242.
	ID int64
	// InstallationID is the installation's ID on the repository's owner.
	// Default 7700770.
	InstallationID int64
	// Key is the app's public key, which JWTs are verified with. Required.
	Key *rsa.PublicKey
	// TokenLifetime is how long an installation token lives. Default 1h,
	// as on GitHub.
	TokenLifetime time.Duration
}

// InstallationToken is an installation token the server issued.
type InstallationToken struct {
	Token        string
	Issued       time.Time
	ExpiresAt    time.Time
	Revoked      bool
	Repositories []string // the repositories the request limited it to
}

// maxJWTLifetime is the longest a JWT may live, exp after iat: GitHub
// refuses one whose exp is more than 10 minutes ahead.
const maxJWTLifetime = 10 * time.Minute

// now is the server's clock: Options.Now, or the wall clock.
func (s *Server) now() time.Time {
	if s.opts.Now != nil {
		return s.opts.Now()
	}
	return time.Now()
}

// InstallationTokens returns the installation tokens issued so far, oldest
// first.
func (s *Server) InstallationTokens() []InstallationToken {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]InstallationToken, len(s.tokens))
	for i, t := range s.tokens {
		out[i] = *t
		out[i].Repositories = append([]string(nil), t.Repositories...)
	}
	return out
}

// RevokeInstallationTokens revokes every installation token issued so far,
// as DELETE /installation/token, or an app's suspension, does: requests
// that carry one are answered 401 from then on.
func (s *Server) RevokeInstallationTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.tokens {
		t.Revoked = true
	}
}

// SetTokenLifetime changes how long the installation tokens issued from now
// on live.
func (s *Server) SetTokenLifetime(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts.App.TokenLifetime = d
}

// CurrentToken reports whether tok is an installation token that is
// current: issued, neither expired nor revoked.
func (s *Server) CurrentToken(tok string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.currentToken(tok)
}

// currentToken is CurrentToken; s.mu is held.
func (s *Server) currentToken(tok string) bool {
	for _, t := range s.tokens {
		if t.Token == tok {
			return !t.Revoked && s.now().Before(t.ExpiresAt)
		}
	}
	return false
}

// appAuth checks the credentials of a request when the server plays an
// app: a JWT for the app's own operations, a current installation token
// for the others. It returns a zero answer when they are good.
func (s *Server) appAuth(op *operation, auth string) (answer, []string) {
	tok, _ := strings.CutPrefix(auth, "Bearer ")
	switch op.ID {
	case "apps/get-repo-installation", "apps/create-installation-access-token":
		if auth == "" {
			return errorAnswer(http.StatusUnauthorized, "A JSON web token could not be decoded"),
				[]string{"no JWT: the app's operations take the app's JWT"}
		}
		if err := s.checkJWT(tok); err != nil {
			return errorAnswer(http.StatusUnauthorized, "A JSON web token could not be decoded"), []string{"JWT: " + err.Error()}
		}
		return answer{}, nil
	}
	if auth == "" {
		return errorAnswer(http.StatusNotFound, "Not Found"), nil
	}
	s.mu.Lock()
	ok := s.currentToken(tok)
	s.mu.Unlock()
	if !ok {
		return errorAnswer(http.StatusUnauthorized, "Bad credentials"), nil
	}
	return answer{}, nil
}

// checkJWT verifies a JWT as GitHub does for an app: RS256 signed with the
// app's key, iss the app's ID, iat not in the future, exp in the future
// and at most 10 minutes after iat.
func (s *Server) checkJWT(tok string) error {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return errors.New("not three dot-separated parts")
	}
	var header struct {
		Alg string `json:"alg"`
		Typ string `json:"typ"`
	}
	if err := decodePart(parts[0], &header); err != nil {
		return fmt.Errorf("header: %w", err)
	}
	if header.Alg != "RS256" {
		return fmt.Errorf("alg %q, want RS256", header.Alg)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return fmt.Errorf("signature: %w", err)
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(s.opts.App.Key, crypto.SHA256, sum[:], sig); err != nil {
		return errors.New("signature does not verify with the app's public key")
	}
	var claims struct {
		Iss json.RawMessage `json:"iss"`
		Iat *json.Number    `json:"iat"`
		Exp *json.Number    `json:"exp"`
	}
	if err := decodePart(parts[1], &claims); err != nil {
		return fmt.Errorf("claims: %w", err)
	}
	iss := strings.Trim(string(claims.Iss), `"`)
	if iss != strconv.FormatInt(s.opts.App.ID, 10) {
		return fmt.Errorf("iss %s, want the app's ID %d", claims.Iss, s.opts.App.ID)
	}
	if claims.Iat == nil || claims.Exp == nil {
		return errors.New("iat or exp missing")
	}
	iat, err1 := claims.Iat.Int64()
	exp, err2 := claims.Exp.Int64()
	if err1 != nil || err2 != nil {
		return errors.New("iat or exp is not an integer")
	}
	now := s.now().Unix()
	switch {
	case iat > now:
		return fmt.Errorf("iat %d is in the future (now %d)", iat, now)
	case exp <= now:
		return fmt.Errorf("exp %d has passed (now %d)", exp, now)
	case exp-iat > int64(maxJWTLifetime/time.Second):
		return fmt.Errorf("exp %d is more than 10 minutes after iat %d", exp, iat)
	case exp-now > int64(maxJWTLifetime/time.Second):
		return fmt.Errorf("exp %d is more than 10 minutes ahead (now %d)", exp, now)
	}
	return nil
}

// decodePart decodes one base64url part of a JWT into v.
func decodePart(part string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(part)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	return dec.Decode(v)
}

// getRepoInstallation answers GET /repos/{owner}/{repo}/installation.
func (s *Server) getRepoInstallation(op *operation) answer {
	a := s.opts.App
	return answer{status: http.StatusOK, body: shape(responseSchema(op, http.StatusOK, ""), map[string]any{
		"id": a.InstallationID, "app_id": a.ID, "app_slug": "site-deployer",
		"target_id": 1, "target_type": "Organization", "repository_selection": "selected",
		"access_tokens_url": fmt.Sprintf("%s/app/installations/%d/access_tokens", s.URL(), a.InstallationID),
		"repositories_url":  s.URL() + "/installation/repositories",
		"html_url":          fmt.Sprintf("https://github.example/organizations/%s/settings/installations/%d", s.opts.Owner, a.InstallationID),
		"created_at":        stamp(epoch), "updated_at": stamp(epoch),
		"permissions": map[string]any{"contents": "read", "deployments": "write", "checks": "read",
			"statuses": "read", "pull_requests": "write", "metadata": "read"},
		"events": []any{"push", "pull_request"},
	})}
}

// createInstallationToken answers POST
// /app/installations/{installation_id}/access_tokens; s.mu is held.
func (s *Server) createInstallationToken(op *operation, rec *Request) answer {
	a := s.opts.App
	if rec.Params["installation_id"] != strconv.FormatInt(a.InstallationID, 10) {
		return errorAnswer(http.StatusNotFound, "Not Found")
	}
	var repos []string
	if list, ok := rec.Body["repositories"].([]any); ok {
		for _, r := range list {
			name, _ := r.(string)
			if !strings.EqualFold(name, s.opts.Repo) {
				return errorAnswer(http.StatusUnprocessableEntity, "There is at least one repository that does not exist or is not accessible to the parent installation.")
			}
			repos = append(repos, name)
		}
	}
	t := &InstallationToken{Token: newInstallationToken(), Issued: s.now(), Repositories: repos}
	t.ExpiresAt = t.Issued.Add(a.TokenLifetime).Truncate(time.Second) // GitHub gives seconds
	s.tokens = append(s.tokens, t)
	body := map[string]any{"token": t.Token, "expires_at": t.ExpiresAt.UTC().Format(time.RFC3339),
		"permissions": map[string]any{"contents": "read"}, "repository_selection": "selected"}
	return answer{status: http.StatusCreated, body: shape(responseSchema(op, http.StatusCreated, ""), body)}
}

// newInstallationToken returns a token shaped as GitHub's: ghs_ and 36
// letters and digits.
func newInstallationToken() string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 36)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return "ghs_" + string(b)
}

// NewAppKey makes an app's private key and writes it, PEM-encoded in
// PKCS#1 as GitHub hands it out, to a file of mode 0600 in a temporary
// folder of t, whose name it returns.
func NewAppKey(t testing.TB) (*rsa.PrivateKey, string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "app.private-key.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(file, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return key, file
}
