package image

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/cri-shim/cri-shim/pkg/image/hosts"
)

// transports keeps one HTTP transport per configured host so that
// connections are reused across pulls.
type transports struct {
	mu sync.Mutex
	m  map[string]http.RoundTripper
}

func (t *transports) get(h hosts.Host) (http.RoundTripper, error) {
	key := fmt.Sprintf("%s|%s|%s|%t|%v|%v|%v", h.Scheme, h.Host, h.Path, h.SkipVerify, h.CAs, h.Clients, h.Header)
	t.mu.Lock()
	defer t.mu.Unlock()
	if rt, ok := t.m[key]; ok {
		return rt, nil
	}
	tlsConfig, err := h.TLSConfig()
	if err != nil {
		return nil, err
	}
	base := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsConfig,
		TLSHandshakeTimeout:   10 * time.Second,
		ForceAttemptHTTP2:     true,
		MaxIdleConnsPerHost:   8,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	rt := progressTransport{next: hostTransport{host: h, next: base}}
	if t.m == nil {
		t.m = map[string]http.RoundTripper{}
	}
	t.m[key] = rt
	return rt, nil
}

// hostTransport makes requests to the configured host use its scheme, API
// path and extra headers. go-containerregistry picks the scheme itself (it
// prefers https and treats loopback names as insecure); hosts.toml decides
// here. Requests to other hosts (token services, blob redirects) pass
// through untouched.
type hostTransport struct {
	host hosts.Host
	next http.RoundTripper
}

func (t hostTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Host != t.host.Host {
		return t.next.RoundTrip(req)
	}
	req = req.Clone(req.Context())
	req.URL.Scheme = t.host.Scheme
	if t.host.Path != "/v2" {
		if rest, ok := strings.CutPrefix(req.URL.Path, "/v2"); ok {
			req.URL.Path = t.host.Path + rest
			req.URL.RawPath = ""
		}
	}
	for k, vs := range t.host.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	return t.next.RoundTrip(req)
}
