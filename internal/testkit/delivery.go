package testkit

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Sign returns the X-Hub-Signature-256 header value of body under secret, as
// GitHub computes it: "sha256=" and the hex HMAC-SHA256 of the raw body.
func Sign(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// DeliveryID returns a new random delivery id, a GUID as GitHub sends in
// X-GitHub-Delivery.
func DeliveryID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// Delivery is a webhook delivery as GitHub sends it.
type Delivery struct {
	Event  string // X-GitHub-Event
	ID     string // X-GitHub-Delivery; a new DeliveryID when empty
	Secret string // the webhook secret it is signed with
	Body   []byte // the JSON payload
}

// Request returns the POST of d to url: a JSON body with GitHub's headers
// and the signature of the body under d.Secret.
func (d Delivery) Request(url string) (*http.Request, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(d.Body))
	if err != nil {
		return nil, fmt.Errorf("making the delivery: %w", err)
	}
	id := d.ID
	if id == "" {
		id = DeliveryID()
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "GitHub-Hookshot/testkit")
	req.Header.Set("X-GitHub-Event", d.Event)
	req.Header.Set("X-GitHub-Delivery", id)
	req.Header.Set("X-Hub-Signature-256", Sign(d.Secret, d.Body))
	return req, nil
}

// Send posts d to url with client and returns the answer's status and its
// body (the first 64 KiB, spaces trimmed).
func (d Delivery) Send(client *http.Client, url string) (int, string, error) {
	req, err := d.Request(url)
	if err != nil {
		return 0, "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("sending the delivery: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return resp.StatusCode, "", fmt.Errorf("reading the answer: %w", err)
	}
	return resp.StatusCode, strings.TrimSpace(string(body)), nil
}
