package notify

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// Format is the shape of what a destination is sent.
type Format string

// Formats of a destination.
const (
	// FormatJSON: a JSON object (type, timestamp, data) signed as Standard
	// Webhooks are: webhook-id, webhook-timestamp, webhook-signature.
	FormatJSON Format = "json"
	// FormatSlack: Slack's incoming webhook, {"text": ...}.
	FormatSlack Format = "slack"
	// FormatDiscord: Discord's webhook, {"content": ...}.
	FormatDiscord Format = "discord"
	// FormatNtfy: ntfy's plain-text message with Title, Priority and Tags
	// headers.
	FormatNtfy Format = "ntfy"
)

// Formats lists every Format, for validating a configuration.
var Formats = []Format{FormatJSON, FormatSlack, FormatDiscord, FormatNtfy}

// Outcomes of a send, in Result.Outcome.
const (
	OutcomeOK      = "ok"      // the destination answered 2xx
	OutcomeRetry   = "retry"   // an attempt failed; it is tried again
	OutcomeError   = "error"   // the message was given up: a final answer, or every attempt failed
	OutcomeDropped = "dropped" // the message was never sent: the queue was full, or Close gave up
)

// Result says what came of one attempt to send a message, for counting and
// logging. It holds nothing secret: Destination is the URL's scheme and
// host only (a Slack or Discord webhook's path is its credential).
type Result struct {
	Destination string
	Kind        Kind
	Outcome     string
	Attempt     int   // 1 for the first
	Status      int   // the HTTP status answered; 0 for none
	Err         error // why an attempt failed; never holds the URL
}

// Destination is where messages are sent, and which.
type Destination struct {
	// URL receives a POST per message. For Slack and Discord (and an ntfy
	// topic) the URL is itself a credential: it is never logged.
	URL string
	// Format is the shape of the body; "" guesses from the URL (GuessFormat).
	Format Format
	// Secret signs FormatJSON messages: the whsec_<base64> form that the
	// Standard Webhooks libraries take. Empty sends them unsigned.
	Secret string
	// On are the kinds this destination is sent; nil is DefaultKinds.
	On []Kind
}

// GuessFormat is the format of a destination at u when none is named:
// Slack's and Discord's webhook hosts, ntfy.sh, else json.
func GuessFormat(u string) Format {
	p, err := url.Parse(u)
	if err != nil {
		return FormatJSON
	}
	host := strings.ToLower(p.Hostname())
	switch {
	case host == "hooks.slack.com":
		return FormatSlack
	case (host == "discord.com" || host == "discordapp.com" || strings.HasSuffix(host, ".discord.com")) &&
		strings.HasPrefix(p.Path, "/api/webhooks/"):
		return FormatDiscord
	case host == "ntfy.sh":
		return FormatNtfy
	}
	return FormatJSON
}

// Validate reports whether d can be sent to. Its errors never quote the
// URL or the secret.
func (d Destination) Validate() error {
	u, err := url.Parse(d.URL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return errors.New("url is not an http or https URL")
	}
	if d.Format != "" && !slices.Contains(Formats, d.Format) {
		return fmt.Errorf("format %q is not one of json, slack, discord, ntfy", d.Format)
	}
	if d.Secret != "" {
		if f := d.format(); f != FormatJSON {
			return fmt.Errorf("secret signs the json format only, not %s", f)
		}
		if !strings.HasPrefix(d.Secret, "whsec_") {
			return errors.New("secret must be in the whsec_<base64> form")
		}
		if _, err := standardwebhooks.NewWebhook(d.Secret); err != nil {
			return errors.New("secret is not whsec_ followed by base64")
		}
	}
	for _, k := range d.On {
		if !slices.Contains(Kinds, k) {
			return fmt.Errorf("on %q is not one of failure, recovered, success", k)
		}
	}
	return nil
}

func (d Destination) format() Format {
	if d.Format != "" {
		return d.Format
	}
	return GuessFormat(d.URL)
}

// Redacted is the URL's scheme and host: what logs and metrics may name.
func Redacted(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.Host == "" {
		return "(invalid url)"
	}
	return p.Scheme + "://" + p.Host
}

// Option changes a Notifier's defaults; for tests.
type Option func(*options)

type options struct {
	client   *http.Client
	now      func() time.Time
	backoff  func(attempt int) time.Duration
	queue    int
	attempts int
	timeout  time.Duration
	onResult func(Result)
}

// Defaults: the first retry after a second, doubling up to five minutes,
// ten attempts in all (about eight and a half minutes).
const (
	DefaultQueue    = 64
	DefaultAttempts = 10
	DefaultTimeout  = 10 * time.Second
	backoffBase     = time.Second
	backoffMax      = 5 * time.Minute
)

// Backoff is the default wait before attempt+1: a second, doubling, at
// most five minutes.
func Backoff(attempt int) time.Duration {
	d := backoffBase << min(attempt-1, 20)
	return min(d, backoffMax)
}

// WithClient sends through c instead of a client with DefaultTimeout that
// follows no redirect.
func WithClient(c *http.Client) Option { return func(o *options) { o.client = c } }

// WithClock makes now the clock of the messages' signatures.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithBackoff makes f the wait before attempt+1 (attempt is 1 after the
// first failure); a Retry-After answered is taken when longer, up to five
// minutes.
func WithBackoff(f func(attempt int) time.Duration) Option {
	return func(o *options) { o.backoff = f }
}

// WithQueue bounds each destination's queue to n messages: past it, the
// oldest queued message is dropped.
func WithQueue(n int) Option { return func(o *options) { o.queue = n } }

// WithAttempts gives up a message after n attempts.
func WithAttempts(n int) Option { return func(o *options) { o.attempts = n } }

// WithTimeout bounds one attempt.
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithResult calls f after each attempt and for each message dropped, from
// the destination's goroutine (or Send's, for a drop): to count them.
func WithResult(f func(Result)) Option { return func(o *options) { o.onResult = f } }

// Notifier sends messages to destinations. Its methods are safe for
// concurrent use.
type Notifier struct {
	opts   options
	dests  []*destination
	ctx    context.Context // ends when Close gives up
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once // starts the goroutines at the first Send
	mu     sync.Mutex
	closed bool
}

// destination is one Destination with its queue and goroutine.
type destination struct {
	Destination
	format  Format
	webhook *standardwebhooks.Webhook // nil unless signed
	name    string                    // Redacted(URL)

	mu    sync.Mutex
	queue []job
	wake  chan struct{} // one slot
	done  bool          // Close was called: send what is queued, then stop
}

type job struct {
	msg Message
	id  string // webhook-id: the same on every attempt
}

// New returns a Notifier for dests; it starts no goroutine until the first
// Send. It fails when a destination does not Validate.
func New(dests []Destination, opts ...Option) (*Notifier, error) {
	o := options{
		now:      time.Now,
		backoff:  Backoff,
		queue:    DefaultQueue,
		attempts: DefaultAttempts,
		timeout:  DefaultTimeout,
		onResult: func(Result) {},
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.client == nil {
		o.client = &http.Client{
			Timeout: o.timeout,
			// A webhook answers; a redirect is an error, not a second
			// destination chosen by whoever answered.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Notifier{opts: o, ctx: ctx, cancel: cancel}
	for i, d := range dests {
		if err := d.Validate(); err != nil {
			cancel()
			return nil, fmt.Errorf("destination %d: %w", i+1, err)
		}
		dd := &destination{Destination: d, format: d.format(), name: Redacted(d.URL), wake: make(chan struct{}, 1)}
		if dd.On == nil {
			dd.On = DefaultKinds
		}
		if d.Secret != "" {
			w, err := standardwebhooks.NewWebhook(d.Secret)
			if err != nil {
				cancel()
				return nil, fmt.Errorf("destination %d: secret: not whsec_ followed by base64", i+1)
			}
			dd.webhook = w
		}
		n.dests = append(n.dests, dd)
	}
	return n, nil
}

// Send queues m for every destination that asked for its kind. It never
// blocks on the network: when a destination's queue is full, its oldest
// message is dropped. After Close it does nothing.
func (n *Notifier) Send(m Message) {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.once.Do(n.start) // under mu: Close waits for every goroutine started
	n.mu.Unlock()
	for _, d := range n.dests {
		if !slices.Contains(d.On, m.Kind) {
			continue
		}
		j := job{msg: m, id: newID()}
		d.mu.Lock()
		var dropped *job
		if len(d.queue) >= n.opts.queue {
			dropped = &d.queue[0]
			d.queue = slices.Delete(d.queue, 0, 1)
		}
		d.queue = append(d.queue, j)
		d.mu.Unlock()
		if dropped != nil {
			n.opts.onResult(Result{Destination: d.name, Kind: dropped.msg.Kind, Outcome: OutcomeDropped,
				Err: errors.New("queue full")})
		}
		select {
		case d.wake <- struct{}{}:
		default:
		}
	}
}

func (n *Notifier) start() {
	for _, d := range n.dests {
		n.wg.Add(1)
		go n.run(d)
	}
}

// Close stops accepting messages and sends those queued, retries
// included, until ctx ends; then it gives up what is left (counted as
// dropped) and returns ctx's error. No goroutine is left once it returns.
func (n *Notifier) Close(ctx context.Context) error {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	for _, d := range n.dests {
		d.mu.Lock()
		d.done = true
		d.mu.Unlock()
		select {
		case d.wake <- struct{}{}:
		default:
		}
	}
	stopped := make(chan struct{})
	go func() {
		n.wg.Wait()
		close(stopped)
	}()
	var err error
	select {
	case <-stopped:
	case <-ctx.Done():
		err = ctx.Err()
		n.cancel()
		<-stopped
	}
	n.cancel()
	return err
}

// run sends d's messages in order until Close.
func (n *Notifier) run(d *destination) {
	defer n.wg.Done()
	defer func() {
		if r := recover(); r != nil {
			n.opts.onResult(Result{Destination: d.name, Outcome: OutcomeError, Err: fmt.Errorf("panic: %v", r)})
		}
	}()
	for {
		d.mu.Lock()
		if len(d.queue) == 0 {
			done := d.done
			d.mu.Unlock()
			if done {
				return
			}
			select {
			case <-d.wake:
			case <-n.ctx.Done():
			}
			if n.ctx.Err() != nil {
				return
			}
			continue
		}
		j := d.queue[0]
		d.queue = d.queue[1:]
		d.mu.Unlock()
		if n.ctx.Err() != nil {
			n.opts.onResult(Result{Destination: d.name, Kind: j.msg.Kind, Outcome: OutcomeDropped, Err: n.ctx.Err()})
			continue
		}
		n.deliver(d, j)
	}
}

// deliver sends j to d, retrying with backoff.
func (n *Notifier) deliver(d *destination, j job) {
	for attempt := 1; ; attempt++ {
		status, wait, err := n.attempt(d, j)
		res := Result{Destination: d.name, Kind: j.msg.Kind, Attempt: attempt, Status: status, Err: err}
		if err == nil {
			res.Outcome = OutcomeOK
			n.opts.onResult(res)
			return
		}
		if n.ctx.Err() != nil {
			res.Outcome = OutcomeDropped // Close gave up on it
			n.opts.onResult(res)
			return
		}
		if attempt >= n.opts.attempts || !retryable(status) {
			res.Outcome = OutcomeError
			n.opts.onResult(res)
			return
		}
		res.Outcome = OutcomeRetry
		n.opts.onResult(res)
		wait = max(wait, n.opts.backoff(attempt))
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-n.ctx.Done():
			t.Stop()
			n.opts.onResult(Result{Destination: d.name, Kind: j.msg.Kind, Outcome: OutcomeDropped, Attempt: attempt, Err: n.ctx.Err()})
			return
		}
	}
}

// retryable reports whether an attempt answered status (0: none) may
// succeed if tried again.
func retryable(status int) bool {
	return status == 0 || status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status >= 500
}

// attempt sends j once. It returns the status answered (0 for none), the
// wait a Retry-After asked for, and why it failed.
func (n *Notifier) attempt(d *destination, j job) (int, time.Duration, error) {
	ctx, cancel := context.WithTimeout(n.ctx, n.opts.timeout)
	defer cancel()
	req, err := n.request(ctx, d, j)
	if err != nil {
		return 0, 0, err
	}
	resp, err := n.opts.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL, which may be a credential
		}
		return 0, 0, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp.StatusCode, 0, nil
	}
	var wait time.Duration
	if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
		wait = min(time.Duration(secs)*time.Second, backoffMax)
	}
	return resp.StatusCode, wait, fmt.Errorf("answered %s", resp.Status)
}

// request is the HTTP request of one attempt: the body in d's format and,
// for json, the Standard Webhooks headers, signed at the attempt's time.
func (n *Notifier) request(ctx context.Context, d *destination, j job) (*http.Request, error) {
	m := j.msg
	var body []byte
	var err error
	contentType := "application/json"
	switch d.format {
	case FormatSlack:
		body, err = json.Marshal(map[string]string{"text": m.text(FormatSlack)})
	case FormatDiscord:
		body, err = json.Marshal(map[string]any{
			"content": m.text(FormatDiscord),
			// Nothing in a deploy's result may ping anyone.
			"allowed_mentions": map[string]any{"parse": []string{}},
		})
	case FormatNtfy:
		body, contentType = []byte(m.text(FormatNtfy)), "text/plain; charset=utf-8"
	default:
		body, err = m.jsonBody()
	}
	if err != nil {
		return nil, fmt.Errorf("encoding the message: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL, bytes.NewReader(body))
	if err != nil {
		return nil, errors.New("making the request: the url is not valid")
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("User-Agent", "caddy-github-webhook")
	switch d.format {
	case FormatJSON:
		now := n.opts.now()
		req.Header.Set(standardwebhooks.HeaderWebhookID, j.id)
		req.Header.Set(standardwebhooks.HeaderWebhookTimestamp, strconv.FormatInt(now.Unix(), 10))
		if d.webhook != nil {
			sig, err := d.webhook.Sign(j.id, now, body)
			if err != nil {
				return nil, fmt.Errorf("signing: %w", err)
			}
			req.Header.Set(standardwebhooks.HeaderWebhookSignature, sig)
		}
	case FormatNtfy:
		req.Header.Set("Title", m.title())
		if m.Kind == Failure {
			req.Header.Set("Priority", "high")
			req.Header.Set("Tags", "warning")
		} else {
			req.Header.Set("Priority", "default")
			req.Header.Set("Tags", "white_check_mark")
		}
		if m.CommitURL != "" {
			req.Header.Set("Click", m.CommitURL)
		}
	}
	return req, nil
}

// newID is a message id, msg_ and 32 hex digits, as Standard Webhooks ids
// are unique per message and kept across its attempts.
func newID() string {
	var b [16]byte
	rand.Read(b[:])
	return "msg_" + hex.EncodeToString(b[:])
}
