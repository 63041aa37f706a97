package image

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"

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
	rt := limitTransport{next: progressTransport{next: hostTransport{host: h, next: base}}}
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

type bodyLimitKey struct{}

// withBodyLimit bounds every response body read under ctx to n bytes.
//
// Manifests need it: go-containerregistry's remote.Get reads the whole body
// into memory before returning, bounded only by its own 100 MiB limit, which
// no option lowers, so checking the size afterwards would be too late. This
// bound is on the read itself: a declared Content-Length over n fails before
// the body is read, and a body that runs past n fails at byte n+1. It applies
// to everything the operation fetches (a /v2/ ping and a token answer too,
// which are far smaller).
func withBodyLimit(ctx context.Context, n int64) context.Context {
	return context.WithValue(ctx, bodyLimitKey{}, n)
}

// limitTransport enforces withBodyLimit.
type limitTransport struct {
	next http.RoundTripper
}

func (t limitTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	n, ok := req.Context().Value(bodyLimitKey{}).(int64)
	// A HEAD answer declares the size of a body it does not send.
	if !ok || err != nil || resp == nil || req.Method == http.MethodHead {
		return resp, err
	}
	if resp.ContentLength > n {
		resp.Body.Close()
		return nil, fmt.Errorf("%s %s: response declares %d bytes, over the %d-byte limit: %w",
			req.Method, req.URL.Redacted(), resp.ContentLength, n, errdefs.ErrInvalidArgument)
	}
	what := fmt.Sprintf("response body of %s %s", req.Method, req.URL.Redacted())
	resp.Body = cappedBody{Reader: newCapReader(resp.Body, n, what), Closer: resp.Body}
	return resp, nil
}

type cappedBody struct {
	io.Reader
	io.Closer
}
