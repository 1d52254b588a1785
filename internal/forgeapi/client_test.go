package forgeapi

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestNewRefusesTokenInClear: a token over http:// goes only to a loopback
// host; https and a loopback http are fine, and so is http without a token.
func TestNewRefusesTokenInClear(t *testing.T) {
	for _, tt := range []struct {
		url, token string
		ok         bool
	}{
		{"http://gitea.example.com/api/v1", token, false},
		{"http://10.0.0.5:3000/api/v1", token, false},
		{"http://gitea.example.com/api/v1", "", true},
		{"https://gitea.example.com/api/v1", token, true},
		{"http://127.0.0.1:3000/api/v1", token, true},
		{"http://[::1]:3000/api/v1", token, true},
		{"http://localhost:3000/api/v1", token, true},
		{"https://user:pw@gitea.example.com/api/v1", "", false},
		{"ftp://gitea.example.com/api/v1", "", false},
	} {
		_, err := New(Config{Kind: Gitea, APIURL: tt.url, Token: tt.token, Repo: "o/r"})
		if (err == nil) != tt.ok {
			t.Errorf("%s with token %v: err %v, want ok %v", tt.url, tt.token != "", err, tt.ok)
		}
		if err != nil && strings.Contains(err.Error(), token) {
			t.Errorf("error names the token: %v", err)
		}
	}
	if _, err := New(Config{Kind: Gitea, APIURL: "https://g.example/api/v1", Repo: "a/b/c"}); err == nil {
		t.Error("a Gitea repository a/b/c was taken")
	}
	if _, err := New(Config{Kind: GitLab, APIURL: "https://g.example/api/v4", Repo: "a/b/c"}); err != nil {
		t.Errorf("a GitLab project in a subgroup: %v", err)
	}
}

// TestTokenStaysOnOrigin: a Bitbucket "next" link or a redirect to another
// origin is never followed with the token, and errors carry no token.
func TestTokenStaysOnOrigin(t *testing.T) {
	var leaked []string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaked = append(leaked, r.Header.Get("Authorization")+r.Header.Get("PRIVATE-TOKEN"))
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"values":[]}`))
	}))
	defer other.Close()
	otherURL := strings.Replace(other.URL, "127.0.0.1", "localhost", 1) // another origin
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/statuses"):
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"values":[],"next":"` + otherURL + `/2.0/next"}`))
		default:
			http.Redirect(w, r, otherURL+"/elsewhere", http.StatusTemporaryRedirect)
		}
	}))
	defer api.Close()

	c, err := New(Config{Kind: Bitbucket, APIURL: api.URL + "/2.0", Token: token, Repo: "o/r", Environment: "production"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Checks(context.Background(), sha1, nil)
	if err == nil || !strings.Contains(err.Error(), "off the API's origin") {
		t.Errorf("next link to another origin: %v, want refused", err)
	}
	if _, err := c.bitbucketSetStatus(context.Background(), sha1, status{step: stepStarted}); err == nil {
		t.Error("a redirect to another origin was followed")
	} else {
		var ae *APIError
		if !errors.As(err, &ae) || strings.Contains(err.Error(), token) || strings.Contains(err.Error(), "/elsewhere") {
			t.Errorf("error %q: want an *APIError naming neither the token nor the URL", err)
		}
	}
	if len(leaked) > 0 {
		t.Errorf("the other origin got %q", leaked)
	}
}
