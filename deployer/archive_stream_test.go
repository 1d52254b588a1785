package deployer

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"
)

// Unpacking starts while the archive is still being read: once the
// unpacker has part i, part i+1 is loading (its load begins before the
// unpacker asks for it), and a reader of three parts reads them whole and
// in order. A load that fails stops the parts after it.
func TestLoadAheadOverlapsUnpacking(t *testing.T) {
	data := map[string][]byte{"p0": []byte("zero "), "p1": []byte("one "), "p2": []byte("two")}
	var parts []ArchivePart
	for _, k := range []string{"p0", "p1", "p2"} {
		parts = append(parts, ArchivePart{Key: k, Size: int64(len(data[k])), Digest: digestOf(data[k])})
	}
	began := make(chan string, 3)
	get, stop := loadAhead(parts, func(key string) ([]byte, error) {
		began <- key
		return data[key], nil
	})
	defer stop()
	pr := newPartsReader(parts, get)
	buf := make([]byte, 2)
	if _, err := io.ReadFull(pr, buf); err != nil { // from part 0 alone
		t.Fatal(err)
	}
	for _, want := range []string{"p0", "p1"} {
		select {
		case got := <-began:
			if got != want {
				t.Fatalf("load of %s began, want %s", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("part %s was not loading while the unpacker read part 0", want)
		}
	}
	rest, err := io.ReadAll(pr)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(buf) + string(rest); got != "zero one two" {
		t.Errorf("read %q", got)
	}
	var whole bytes.Buffer
	for _, k := range []string{"p0", "p1", "p2"} {
		whole.Write(data[k])
	}
	if err := pr.finish(digestOf(whole.Bytes()), int64(whole.Len())); err != nil {
		t.Error(err)
	}

	t.Run("a failed load", func(t *testing.T) {
		var asked []string
		get, stop := loadAhead(parts, func(key string) ([]byte, error) {
			if key == "p1" {
				return nil, errors.New("storage down")
			}
			asked = append(asked, key)
			return data[key], nil
		})
		defer stop()
		pr := newPartsReader(parts, get)
		_, err := io.ReadAll(pr)
		stop()
		if err == nil || !pr.loadFailed || fmt.Sprint(asked) != "[p0]" {
			t.Errorf("error %v, load failed %v, loaded %v; want storage down after p0 alone", err, pr.loadFailed, asked)
		}
	})
}
