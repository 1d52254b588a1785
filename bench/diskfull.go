package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/caddy-webhooks/caddy-github-webhook/deployer"
)

// diskFull deploys onto a 16 MiB tmpfs, then a commit whose build does not
// fit: the deploy fails saying so, the live site stays as it was, the failed
// build leaves nothing behind, and the next commit deploys again.
func (r *run) diskFull() error {
	dir, err := r.mkdir("diskfull")
	if err != nil {
		return err
	}
	mnt := filepath.Join(dir, "tmpfs")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return err
	}
	const size = 16 << 20
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", mnt).CombinedOutput(); err != nil {
		r.rep.info("skipped", fmt.Sprintf("cannot mount a tmpfs (needs root): %v %s", err, strings.TrimSpace(string(out))))
		return nil
	}
	defer func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			r.logf("umount %s: %v %s", mnt, err, out)
			exec.Command("umount", "-l", mnt).Run()
		}
	}()
	files, extra, what := buildSite(10)
	tb, err := r.newTestbed("diskfull", filepath.Join(mnt, "site"), files, extra)
	if err != nil {
		return err
	}
	defer tb.caddy.stop()
	s, p := tb.site, tb.caddy
	live := liveRelease(s.path)

	// A commit with a large incompressible file: the fetch and the checkout
	// fit, the build's copy of it does not (with hugo); without a build the
	// checkout itself does not fit.
	bigSize, bigName := 6<<20, "static/big.bin"
	if !hugoAvailable() {
		bigSize, bigName = 9<<20, "big.bin"
	}
	big := make([]byte, bigSize)
	rand.Read(big)
	change := buildVersion(1)
	change[bigName] = string(big)
	c1, err := tb.repo.Commit("version 1, with a large file", change)
	if err != nil {
		return err
	}
	if d := r.push(s, tb.first, c1); d.err != nil {
		return d.err
	}
	st, err := p.waitStatus("the deploy to fail", time.Minute, func(st deployer.Status) bool {
		c := st.Checked
		return c != nil && (c.Commit == c1 || c.Outcome == deployer.OutcomeFetchFailed) && st.Running == nil
	})
	if err != nil {
		return err
	}
	// The build's own words are in the tail, before the line that says
	// how the command ended: look at all of it, show its last lines.
	msg, said := "", ""
	if st.Last != nil && st.Last.Result == "error" {
		msg = st.Last.Error
		said = strings.ToLower(st.Last.Error + "\n" + st.Last.OutputTail)
		if lines := strings.Split(strings.TrimSpace(st.Last.OutputTail), "\n"); st.Last.OutputTail != "" {
			msg += " | output tail: " + strings.Join(lines[max(len(lines)-3, 0):], " / ")
		}
	}
	served, serr := servedVersion(s)
	half := halfBuilt(s.path, extra)

	r.rep.info("setup", fmt.Sprintf("%s on a %d MiB tmpfs; the next commit adds a %d MiB incompressible file", what, size>>20, bigSize>>20))
	failed := st.Checked.Outcome == deployer.OutcomeFailed || st.Checked.Outcome == deployer.OutcomeFetchFailed
	r.rep.check("the deploy fails cleanly", fmt.Sprintf("%s: %.300s", st.Checked.Outcome, msg), "error says no space left on device",
		failed && strings.Contains(said, "no space left on device"))
	r.rep.check("live site untouched", fmt.Sprintf("live release unchanged: %v; serving version %d (%v)", liveRelease(s.path) == live, served, serr),
		"version 0", liveRelease(s.path) == live && serr == nil && served == 0)
	r.rep.check("failed build's folder removed", fmt.Sprintf("incomplete releases left: %d %v", len(half), half), "0", len(half) == 0)

	// Once the file is gone again, deploys work again.
	if err := tb.repo.Remove(bigName); err != nil {
		return err
	}
	c2, err := tb.repo.Commit("version 2, without the large file", buildVersion(2))
	if err != nil {
		return err
	}
	if d := r.push(s, c1, c2); d.err != nil {
		return d.err
	}
	_, err = waitLive(s.path, c2, time.Minute)
	served, serr = servedVersion(s)
	r.rep.check("next commit without the file deploys", fmt.Sprintf("serving version %d (%v)", served, errors.Join(err, serr)), "version 2",
		err == nil && serr == nil && served == 2)
	return nil
}
