package deployer

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Names inside Config.Path.
const (
	currentName  = "current"
	releasesName = "releases"
	cacheName    = "cache.git"
	stateName    = "state.json"
	lockName     = ".lock"
	tmpLinkGlob  = ".current.tmp-*"
)

// state is what the deployer remembers across restarts, in Path/state.json.
// It is rewritten atomically (a temporary file renamed over it).
type state struct {
	// Releases are the releases whose build succeeded, oldest first.
	Releases []releaseRecord `json:"releases"`
	// FailedCommit is a tip whose build failed. Start-up and poll leave it
	// alone until the branch moves; a delivery or manual deploy retries it.
	FailedCommit string `json:"failed_commit,omitempty"`
	// PinnedFrom is the commit rolled back from. Start-up and poll do not
	// deploy it again; a delivery, a manual deploy or a new commit does.
	PinnedFrom string `json:"pinned_from,omitempty"`
	// LastSuccess is when the last deploy that succeeded ended.
	LastSuccess time.Time `json:"last_success,omitzero"`
	// Building is the release being built and its process group, so that the
	// next start can end a build a crash left running, and remove its folder.
	Building *building `json:"building,omitempty"`
	// Spare is a release past Keep that prune left on disk for the next
	// deploy without commands to reuse (see reuse.go). It is never offered
	// for rollback and never live.
	Spare *releaseRecord `json:"spare,omitempty"`
}

type releaseRecord struct {
	Name    string    `json:"name"`
	Commit  string    `json:"commit"`
	Publish string    `json:"publish,omitempty"` // the publish folder it was built with
	At      time.Time `json:"at"`                // when it went live first
	// Pristine says the release is exactly its commit's tree: no command
	// ran in it and it has no submodules. A next release without commands
	// may then hard-link its unchanged files instead of writing them again.
	Pristine bool `json:"pristine,omitempty"`
	// Exact says the release's files are its commit's blobs as they are:
	// Pristine, and no .gitattributes anywhere in its tree (whose rules a
	// checkout applies). Only such a release may be reused in place.
	Exact bool `json:"exact,omitempty"`
	// LinksKnown says Links lists every symlink of the release (paths
	// relative to it, slash-separated), so that the release made from it by
	// reuse has its links checked without a walk. A release with more
	// than maxKnownLinks links has them walked.
	LinksKnown bool     `json:"links_known,omitempty"`
	Links      []string `json:"links,omitempty"`
}

type building struct {
	Release string `json:"release"`
	Commit  string `json:"commit,omitempty"`
	Publish string `json:"publish,omitempty"`
	PGID    int    `json:"pgid,omitempty"`
}

func (s *state) find(release string) *releaseRecord {
	for i := range s.Releases {
		if s.Releases[i].Name == release {
			return &s.Releases[i]
		}
	}
	return nil
}

func (s *state) remove(release string) {
	kept := s.Releases[:0]
	for _, r := range s.Releases {
		if r.Name != release {
			kept = append(kept, r)
		}
	}
	s.Releases = kept
}

// loadState reads path's state. A missing or unreadable file is an empty
// state: the deployer then rebuilds what it needs.
func loadState(path string) (state, error) {
	var s state
	b, err := os.ReadFile(filepath.Join(path, stateName))
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("reading state: %w", err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return state{}, fmt.Errorf("reading state: %w", err)
	}
	return s, nil
}

// save writes s to path atomically.
func (s *state) save(path string) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(path, ".state-*.tmp")
	if err != nil {
		return fmt.Errorf("saving state: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("saving state: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("saving state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("saving state: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(path, stateName)); err != nil {
		return fmt.Errorf("saving state: %w", err)
	}
	return nil
}
