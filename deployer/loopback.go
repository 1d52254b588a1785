package deployer

import (
	"net"
	"net/url"
	"strings"
)

// isLoopback reports whether host names this machine: localhost or a
// loopback address.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// tokenScheme reports whether git may send the token to u: over https, or
// over http to a loopback host (a forge on the same machine), where it
// never crosses a network in clear. helperKey registers the credential
// helper only for such a remote.
func tokenScheme(u *url.URL) bool {
	switch strings.ToLower(u.Scheme) {
	case "https":
		return true
	case "http":
		return isLoopback(u.Hostname())
	}
	return false
}
