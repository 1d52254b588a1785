package deployer

import "fmt"

// loadAhead returns a load for a partsReader of parts that loads part i+1
// while the unpacker writes part i out, so that unpacking and reading the
// archive from storage overlap: a follower waits for storage only for the
// first part. At most one load runs ahead, so a follower holds at most
// three parts (the one unpacked, the one loaded ahead, and one the garbage
// collector has not freed yet). stop waits for the load running ahead, if
// any, and drops it: call it before the storage's context ends being
// needed, once the unpacker is done.
func loadAhead(parts []ArchivePart, load func(key string) ([]byte, error)) (get func(key string) ([]byte, error), stop func()) {
	type loaded struct {
		b   []byte
		err error
	}
	var (
		ahead    chan loaded
		aheadKey string
		next     int // the index of the part after the one last asked for
	)
	start := func(i int) {
		if i >= len(parts) {
			return
		}
		ch := make(chan loaded, 1)
		ahead, aheadKey = ch, parts[i].Key
		go func() {
			var r loaded
			defer func() {
				if v := recover(); v != nil {
					r = loaded{err: fmt.Errorf("loading part %s: panicked: %v", parts[i].Key, v)}
				}
				ch <- r
			}()
			r.b, r.err = load(parts[i].Key)
		}()
	}
	stop = func() {
		if ahead != nil {
			<-ahead
			ahead = nil
		}
	}
	get = func(key string) ([]byte, error) {
		var r loaded
		if ahead != nil && aheadKey == key {
			r = <-ahead
			ahead = nil
		} else {
			stop()
			r.b, r.err = load(key)
		}
		for next < len(parts) && parts[next].Key != key {
			next++
		}
		next++
		if r.err == nil {
			start(next)
		}
		return r.b, r.err
	}
	return get, stop
}
