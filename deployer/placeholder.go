package deployer

import (
	"errors"
	"fmt"
	"html"
	"io/fs"
	"os"
	"path/filepath"

	"go.uber.org/zap"
)

// placeholderName is the folder, inside Config.Path, that current points to
// until the first release is live: a page saying that the site is being
// deployed, so that a new site answers with that rather than a blank 404.
// It is no release: it is not in releases/, so the state, rollback,
// pruning and reuse never see it, and Status has no live release while it
// is served.
const placeholderName = "placeholder"

// placeholderRefresh is how often, in seconds, the placeholder page reloads
// itself (a meta refresh: the page has no script).
const placeholderRefresh = 5

// placeholderPage is the page served until the first release is live.
func placeholderPage(repo string) []byte {
	what := "the site"
	if repo != "" {
		what = html.EscapeString(repo)
	}
	return fmt.Appendf(nil, `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="%d">
<meta name="robots" content="noindex">
<title>Deploying %s…</title>
</head>
<body>
<p>Deploying %s… this page refreshes every %d seconds until the site is live.</p>
</body>
</html>
`, placeholderRefresh, what, what, placeholderRefresh)
}

// startPlaceholder is called by Start, before the worker runs. When the
// folder has no current yet (a first start), it writes the placeholder page
// and points current at it, so that the site answers at once; the first
// release replaces it in the same atomic switch as any release replaces
// another. When current points at a release, a placeholder left over (by a
// process that stopped between the switch and the prune) is removed. A
// current that is neither, such as a symlink that the user made, is left
// alone. Failures are logged: the placeholder is a courtesy, never a reason
// not to deploy.
func (d *Deployer) startPlaceholder(repo string) {
	cur := filepath.Join(d.path, currentName)
	if liveRelease(d.path) != "" {
		d.dropPlaceholder()
		return
	}
	target, err := os.Readlink(cur)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err == nil && filepath.Clean(target) == placeholderName:
		// A start before the first release is live again: the page is
		// written anew (the repository may have changed).
	default:
		return
	}
	dir := filepath.Join(d.path, placeholderName)
	if err := writePlaceholder(dir, placeholderPage(repo)); err != nil {
		d.log().Warn("cannot write the page served until the first deploy", zap.Error(err))
		return
	}
	if target == "" {
		if err := switchCurrent(d.path, placeholderName); err != nil {
			d.log().Warn("cannot serve the page shown until the first deploy", zap.Error(err))
		}
	}
}

// writePlaceholder writes page as dir/index.html, replacing any in one
// rename: it may be served while it is written.
func writePlaceholder(dir string, page []byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".index-*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(page); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, "index.html"))
}

// dropPlaceholder removes the placeholder page once current points at a
// release; prune calls it after every deploy that switched current.
func (d *Deployer) dropPlaceholder() {
	if liveRelease(d.path) == "" {
		return
	}
	dir := filepath.Join(d.path, placeholderName)
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err := os.RemoveAll(dir); err != nil {
		d.log().Warn("removing the page served until the first deploy", zap.Error(err))
	}
}
