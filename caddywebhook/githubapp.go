package caddywebhook

import (
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"go.uber.org/zap"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/githubapi"
)

// GitHubApp is a GitHub App whose installation tokens are the credentials
// of git over https and of GitHub's API, in place of token.
type GitHubApp struct {
	// The app's ID, shown on its settings page as "App ID". Required.
	AppID int64 `json:"app_id,omitempty"`

	// The file of the app's private key, as GitHub hands it out (a .pem
	// file). It is read when the configuration loads; the key itself is
	// never in the JSON configuration. Keep it readable by Caddy's user
	// only (mode 0600): a key readable by others loads with a warning.
	// Sandboxed builds never see it. A relative path is taken from
	// Caddy's working directory. Required.
	KeyFile string `json:"key_file,omitempty"`

	// The ID of the app's installation on the repository's owner (the
	// last part of the installation's settings URL). Default: looked up
	// from the repository before the first token.
	InstallationID int64 `json:"installation_id,omitempty"`
}

// maxKeyFile bounds the key file read: a 4096-bit RSA key in PEM is about
// 3 KiB.
const maxKeyFile = 64 << 10

// validateApp checks app.
func (h *Handler) validateApp() error {
	a := h.App
	if a == nil {
		return nil
	}
	switch {
	case h.Token != "":
		return errors.New("app and token are both set: GitHub App credentials replace the token, give one")
	case a.AppID <= 0:
		return errors.New("app: the app ID must be a positive number (the app's settings page: App ID)")
	case strings.TrimSpace(a.KeyFile) == "":
		return errors.New("app: the private key file is required")
	case a.InstallationID < 0:
		return errors.New("app: the installation ID must be a positive number")
	}
	return nil
}

// provisionApp reads the app's key and makes the source of its
// installation tokens, for git (the deployer's TokenSource) and for the
// API (provisionGitHub). It does no network I/O: the first token is asked
// for when git or the API first needs one.
func (h *Handler) provisionApp() error {
	if err := h.validateApp(); err != nil || h.App == nil {
		return err
	}
	file, err := filepath.Abs(h.App.KeyFile)
	if err != nil {
		return fmt.Errorf("app: key file %s: %w", h.App.KeyFile, err)
	}
	key, err := readAppKey(file)
	if err != nil {
		return fmt.Errorf("app: key file %s: %w", file, err)
	}
	if fi, err := os.Stat(file); err == nil && runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		h.logger.Warn("the GitHub App's private key file is readable by other users: chmod 600 it",
			zap.String("key_file", file), zap.String("mode", fi.Mode().Perm().String()))
	}
	owner, name, _ := strings.Cut(h.Repo, "/")
	tokens, err := githubapi.NewAppTokens(githubapi.AppConfig{
		APIURL:         h.APIURL,
		AppID:          h.App.AppID,
		Key:            key,
		InstallationID: h.App.InstallationID,
		Owner:          owner,
		Repo:           name,
		Logger:         h.logger.Named("github_app"),
		// The metrics are made after the configuration validates.
		OnRequest: func(path, result string) { h.metrics.apiCounter(h.key)(path, result) },
	})
	if err != nil {
		return fmt.Errorf("app: %w", err)
	}
	h.appTokens = tokens
	h.cfg.TokenSource = tokens
	// A build has no business reading the key; the sandbox hides it.
	h.cfg.Hide = append(h.cfg.Hide, file)
	return nil
}

// readAppKey reads and parses the key file. Its errors never quote the
// file's content.
func readAppKey(file string) (*rsa.PrivateKey, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("larger than %d KiB: not a GitHub App's private key", maxKeyFile>>10)
	}
	key, err := githubapi.ParseAppKey(data)
	if err != nil {
		return nil, fmt.Errorf("not the RSA private key of a GitHub App (the .pem file GitHub gives): %w", err)
	}
	return key, nil
}
