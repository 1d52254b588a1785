package deployer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// catFile is the deployer's one `git cat-file --batch-command`: started at
// the first deploy that needs it, through the runner (g.start), and kept for
// the deployer's whole life, so that a deploy starts no process to read the
// tip or the objects it writes. Only the worker goroutine uses it. It is
// started again when it died or when the cache repository was created anew
// (see Deployer.initCache), and closed when the worker ends.
type catFile struct {
	p *process
	r *bufio.Reader
}

// errCatFile marks a failure of the process itself (a pipe closed, output
// that does not parse): the process is closed and the next use starts
// another.
var errCatFile = errors.New("git cat-file failed")

// catFile returns the running cat-file, starting one in g's cache
// repository if there is none.
func (d *Deployer) catFile(g *git) (*catFile, error) {
	if d.cat != nil {
		return d.cat, nil
	}
	// The process lives as long as the deployer: its context is the
	// deployer's, and a deploy's timeout ends it through use.
	p, err := g.start(d.ctx, g.cacheDir, nil, "cat-file", "--batch-command")
	if err != nil {
		return nil, err
	}
	d.cat = &catFile{p: p, r: bufio.NewReaderSize(p.Stdout, 64<<10)}
	return d.cat, nil
}

// closeCatFile ends the cat-file, if one runs.
func (d *Deployer) closeCatFile() {
	if d.cat == nil {
		return
	}
	d.cat.p.Stdin.Close()
	d.cat.p.Wait()
	d.cat = nil
}

// withCatFile runs fn with the cat-file, ending it if ctx ends first (fn
// then fails). When fn fails because of the process rather than of what it
// asked (errCatFile), the process is closed; a process that was running
// before this call, which may have died since, is started again and fn is
// tried once more.
func (d *Deployer) withCatFile(ctx context.Context, g *git, fn func(*catFile) error) error {
	for attempt := 0; ; attempt++ {
		fresh := d.cat == nil
		c, err := d.catFile(g)
		if err != nil {
			return err
		}
		proc := c.p.cmd.Process // cat-file starts nothing: killing it is enough
		stop := context.AfterFunc(ctx, func() { proc.Kill() })
		err = fn(c)
		stopped := !stop()
		if err == nil {
			return nil
		}
		if stopped || errors.Is(err, errCatFile) {
			d.closeCatFile()
		}
		if stopped {
			return killedErr(ctx, err)
		}
		if !errors.Is(err, errCatFile) || fresh || attempt > 0 {
			return err
		}
	}
}

// ask sends one command and reads the header of its answer: the object's
// id, type and size. A missing object is an error naming what was asked,
// not a failure of the process.
func (c *catFile) ask(cmd, object string) (oid, typ string, size int64, err error) {
	if strings.ContainsAny(object, "\x00\n\r\t ") || object == "" {
		// One line is one command: nothing may add another.
		return "", "", 0, fmt.Errorf("asking git cat-file for %q: not an object name", object)
	}
	if _, err := io.WriteString(c.p.Stdin, cmd+" "+object+"\n"); err != nil {
		return "", "", 0, fmt.Errorf("%w: writing to it: %v", errCatFile, err)
	}
	line, err := c.r.ReadString('\n')
	if err != nil {
		return "", "", 0, fmt.Errorf("%w: reading from it: %v", errCatFile, err)
	}
	f := strings.Fields(line)
	if len(f) == 2 && f[1] == "missing" || len(f) == 2 && f[1] == "ambiguous" {
		return "", "", 0, fmt.Errorf("reading %s: object %s", object, f[1])
	}
	if len(f) != 3 {
		return "", "", 0, fmt.Errorf("%w: unexpected answer %q", errCatFile, strings.TrimSpace(line))
	}
	size, err = strconv.ParseInt(f[2], 10, 64)
	if err != nil || size < 0 {
		return "", "", 0, fmt.Errorf("%w: unexpected answer %q", errCatFile, strings.TrimSpace(line))
	}
	return f[0], f[1], size, nil
}

// resolve returns the id of the commit that rev names.
func (c *catFile) resolve(rev string) (string, error) {
	oid, typ, _, err := c.ask("info", rev+"^{commit}")
	if err != nil {
		return "", err
	}
	if typ != "commit" {
		return "", fmt.Errorf("%w: %s is a %s", errCatFile, rev, typ)
	}
	return oid, nil
}

// blob passes the content of blob oid to fn, which may read as much of it
// as it likes; the rest is skipped.
func (c *catFile) blob(oid string, fn func(io.Reader) error) error {
	return c.object(oid, "blob", fn)
}

// object passes the content of object oid, of type want, to fn, as blob
// does.
func (c *catFile) object(oid, want string, fn func(io.Reader) error) error {
	got, typ, size, err := c.ask("contents", oid)
	if err != nil {
		return err
	}
	content := io.LimitReader(c.r, size)
	ferr := error(nil)
	if got != oid || typ != want {
		ferr = fmt.Errorf("object %s is a %s, not a %s", oid, typ, want)
	} else {
		ferr = fn(content)
	}
	// Whatever fn did, the stream must stay in step: skip what is left
	// and the newline after the content.
	if _, err := io.Copy(io.Discard, content); err != nil {
		return fmt.Errorf("%w: reading from it: %v", errCatFile, err)
	}
	if b, err := c.r.ReadByte(); err != nil || b != '\n' {
		return fmt.Errorf("%w: no newline after object %s", errCatFile, oid)
	}
	return ferr
}

// initCache prepares the cache repository as g.initCache does, and ends the
// cat-file when the repository is about to be created anew: it would go on
// reading the objects of the one that is removed.
//
// It also remembers the config that cleanCache found clean, so that the
// next deploy, finding the same bytes, starts no git to check it again.
func (d *Deployer) initCache(ctx context.Context, g *git) error {
	if _, err := os.Stat(filepath.Join(g.cacheDir, "HEAD")); err != nil {
		d.closeCatFile()
		d.cleanConfig = nil
	}
	g.cleanConfig = d.cleanConfig
	err := g.initCache(ctx)
	d.cleanConfig = g.cleanConfig
	return err
}

// fetch brings branch's tip into the cache repository and returns its
// commit, read by the cat-file: one process per deploy, the fetch.
func (d *Deployer) fetch(ctx context.Context, g *git, branch string, depth int) (string, error) {
	ref, err := g.fetchRef(ctx, branch, depth)
	if err != nil {
		return "", err
	}
	var tip string
	err = d.withCatFile(ctx, g, func(c *catFile) (err error) {
		tip, err = c.resolve(ref)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("reading the tip of %s: %w", branch, err)
	}
	return tip, nil
}
