// Package hosts reads registry host configuration in containerd's hosts.toml
// layout, unchanged, so that an existing containerd certs.d directory works
// as cri-shim's --registry-config-dir.
//
// For a registry host "example.com:5000" the file <dir>/example.com:5000/hosts.toml
// is read, falling back to <dir>/_default/hosts.toml, falling back to the
// upstream default (https://<host>; docker.io -> https://registry-1.docker.io;
// loopback registries over plain http). A file looks like:
//
//	server = "https://registry.example.com"
//
//	[host."http://127.0.0.1:5000"]
//	  capabilities = ["pull", "resolve"]
//	  skip_verify = true
//	  ca = "ca.crt"            # or a list; relative paths are relative to the file's directory
//	  client = [["c.pem", "k.pem"]]
//	  [host."http://127.0.0.1:5000".header]
//	    x-custom = "1"
//
// Hosts are tried in the order the [host."..."] tables appear in the file, the
// server last. The order is taken from the document itself because a TOML map
// has none.
package hosts

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	toml "github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// Capabilities is the set of operations a host may be used for.
type Capabilities uint8

// The capabilities a host may declare (containerd's names).
const (
	CapPull Capabilities = 1 << iota
	CapResolve
	CapPush

	// capAll is what a host without an explicit capabilities list gets, and
	// what the server always has (containerd's default).
	capAll = CapPull | CapResolve | CapPush
)

// Has reports whether all of want are in c.
func (c Capabilities) Has(want Capabilities) bool { return c&want == want }

func (c Capabilities) String() string {
	var names []string
	for _, n := range []struct {
		c    Capabilities
		name string
	}{{CapPull, "pull"}, {CapResolve, "resolve"}, {CapPush, "push"}} {
		if c.Has(n.c) {
			names = append(names, n.name)
		}
	}
	return strings.Join(names, ",")
}

// Host is one endpoint to try for a registry.
type Host struct {
	// Scheme is "https" or "http".
	Scheme string
	// Host is host[:port].
	Host string
	// Path is the API root, "/v2" unless the config says otherwise.
	Path         string
	Capabilities Capabilities
	SkipVerify   bool
	// CAs are absolute paths of PEM files with extra roots.
	CAs []string
	// Clients are absolute [cert, key] paths of client certificates.
	Clients [][2]string
	Header  http.Header
}

// URL is the host's API root as a URL string, for logs.
func (h Host) URL() string { return h.Scheme + "://" + h.Host + h.Path }

// TLSConfig builds the TLS client configuration the host asks for. It is
// nil for plain-http hosts.
func (h Host) TLSConfig() (*tls.Config, error) {
	if h.Scheme != "https" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: h.SkipVerify} //nolint:gosec // skip_verify is the operator's explicit choice
	if len(h.CAs) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		for _, p := range h.CAs {
			pem, err := os.ReadFile(p)
			if err != nil {
				return nil, fmt.Errorf("read CA for %s: %w", h.Host, err)
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("CA file %s for %s has no PEM certificate: %w", p, h.Host, errdefs.ErrInvalidArgument)
			}
		}
		cfg.RootCAs = pool
	}
	for _, c := range h.Clients {
		pair, err := tls.LoadX509KeyPair(c[0], c[1])
		if err != nil {
			return nil, fmt.Errorf("load client certificate for %s: %w", h.Host, err)
		}
		cfg.Certificates = append(cfg.Certificates, pair)
	}
	return cfg, nil
}

// fileConfig is the part of hosts.toml we understand. Unknown keys
// (dial_timeout, ...) are ignored like containerd ignores what it does not use.
type fileConfig struct {
	Server string                `toml:"server"`
	Host   map[string]hostConfig `toml:"host"`
	hostConfig
}

type hostConfig struct {
	Capabilities []string       `toml:"capabilities"`
	SkipVerify   *bool          `toml:"skip_verify"`
	CA           any            `toml:"ca"`
	Client       any            `toml:"client"`
	Header       map[string]any `toml:"header"`
	OverridePath bool           `toml:"override_path"`
}

// DefaultDir is the directory used for registries without their own.
const DefaultDir = "_default"

// Resolve returns the hosts to try, in order, for registry (a host[:port] as
// it appears in an image name, e.g. "docker.io" or "127.0.0.1:5000"). The
// last entry is always the server. configDir may be empty (no config).
func Resolve(configDir, registry string) ([]Host, error) {
	if registry == "" || strings.ContainsAny(registry, "/\\") || registry == "." || registry == ".." {
		return nil, fmt.Errorf("registry host %q: %w", registry, errdefs.ErrInvalidArgument)
	}
	if configDir == "" {
		return []Host{upstream(registry)}, nil
	}
	for _, d := range []string{registry, DefaultDir} {
		dir := filepath.Join(configDir, d)
		data, err := os.ReadFile(filepath.Join(dir, "hosts.toml"))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read hosts.toml for %s: %w", registry, err)
		}
		hosts, err := parse(data, dir, registry)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", filepath.Join(dir, "hosts.toml"), err)
		}
		return hosts, nil
	}
	return []Host{upstream(registry)}, nil
}

// upstream is the registry's own endpoint when nothing else is configured.
func upstream(registry string) Host {
	h := Host{Scheme: "https", Host: registry, Path: "/v2", Capabilities: capAll}
	if registry == "docker.io" {
		h.Host = "registry-1.docker.io"
	}
	if isLoopback(registry) {
		// containerd also talks plain http to a registry on localhost: there
		// is no certificate to verify on a loopback development registry.
		h.Scheme = "http"
	}
	return h
}

func isLoopback(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func parse(data []byte, dir, registry string) ([]Host, error) {
	// An editor's byte-order mark would otherwise fail the parse with an
	// unhelpful message.
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	var fc fileConfig
	if err := toml.Unmarshal(data, &fc); err != nil {
		return nil, fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
	}
	order, err := hostOrder(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
	}
	var hosts []Host
	for _, key := range order {
		hc, ok := fc.Host[key]
		if !ok {
			continue
		}
		h, err := makeHost(key, hc, dir, false)
		if err != nil {
			return nil, err
		}
		hosts = append(hosts, h)
	}
	server := upstream(registry)
	if fc.Server != "" {
		s, err := makeHost(fc.Server, fc.hostConfig, dir, true)
		if err != nil {
			return nil, err
		}
		server = s
	} else if err := applyHostConfig(&server, fc.hostConfig, dir); err != nil {
		return nil, err
	}
	// The server always gets every capability: it is the registry itself.
	server.Capabilities = capAll
	return append(hosts, server), nil
}

// hostOrder lists the keys of the [host."..."] tables in document order.
func hostOrder(data []byte) ([]string, error) {
	var p unstable.Parser
	p.Reset(data)
	seen := map[string]bool{}
	var order []string
	for p.NextExpression() {
		e := p.Expression()
		var it unstable.Iterator
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable, unstable.KeyValue:
			it = e.Key()
		default:
			continue
		}
		var parts []string
		for it.Next() {
			parts = append(parts, string(it.Node().Data))
		}
		if len(parts) >= 2 && parts[0] == "host" && !seen[parts[1]] {
			seen[parts[1]] = true
			order = append(order, parts[1])
		}
	}
	if err := p.Error(); err != nil {
		return nil, err
	}
	return order, nil
}

func makeHost(raw string, hc hostConfig, dir string, isServer bool) (Host, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return Host{}, fmt.Errorf("host %q: want http(s)://host[:port][/path]: %w", raw, errdefs.ErrInvalidArgument)
	}
	h := Host{Scheme: u.Scheme, Host: u.Host, Capabilities: capAll}
	p := strings.TrimSuffix(u.Path, "/")
	switch {
	case hc.OverridePath:
		h.Path = p
	case p == "" || strings.HasSuffix(p, "/v2"):
		h.Path = p
		if p == "" {
			h.Path = "/v2"
		}
	default:
		// containerd appends the API version to a mirror path that lacks it.
		h.Path = p + "/v2"
	}
	if len(hc.Capabilities) > 0 && !isServer {
		h.Capabilities = 0
		for _, c := range hc.Capabilities {
			switch c {
			case "pull":
				h.Capabilities |= CapPull
			case "resolve":
				h.Capabilities |= CapResolve
			case "push":
				h.Capabilities |= CapPush
			default:
				return Host{}, fmt.Errorf("host %q: unknown capability %q: %w", raw, c, errdefs.ErrInvalidArgument)
			}
		}
	}
	if err := applyHostConfig(&h, hc, dir); err != nil {
		return Host{}, fmt.Errorf("host %q: %w", raw, err)
	}
	return h, nil
}

func applyHostConfig(h *Host, hc hostConfig, dir string) error {
	if hc.SkipVerify != nil {
		h.SkipVerify = *hc.SkipVerify
	}
	cas, err := stringList(hc.CA)
	if err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	for _, c := range cas {
		h.CAs = append(h.CAs, absPath(dir, c))
	}
	clients, err := clientPairs(hc.Client)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	for _, c := range clients {
		h.Clients = append(h.Clients, [2]string{absPath(dir, c[0]), absPath(dir, c[1])})
	}
	if len(hc.Header) > 0 {
		h.Header = http.Header{}
		for k, v := range hc.Header {
			vals, err := stringList(v)
			if err != nil {
				return fmt.Errorf("header %q: %w", k, err)
			}
			for _, s := range vals {
				h.Header.Add(k, s)
			}
		}
	}
	return nil
}

func absPath(dir, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// stringList accepts a string or a list of strings, as containerd does for
// ca and header values.
func stringList(v any) ([]string, error) {
	switch t := v.(type) {
	case nil:
		return nil, nil
	case string:
		return []string{t}, nil
	case []any:
		out := make([]string, 0, len(t))
		for _, e := range t {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("want string, got %T: %w", e, errdefs.ErrInvalidArgument)
			}
			out = append(out, s)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("want string or list of strings, got %T: %w", v, errdefs.ErrInvalidArgument)
	}
}

// clientPairs accepts containerd's forms: "both.pem" (certificate and key in
// one file) or a list whose entries are such a file or a ["cert", "key"] pair.
func clientPairs(v any) ([][2]string, error) {
	switch t := v.(type) {
	case nil:
		return nil, nil
	case string:
		return [][2]string{{t, t}}, nil
	case []any:
		var out [][2]string
		for _, e := range t {
			switch p := e.(type) {
			case string:
				out = append(out, [2]string{p, p})
			case []any:
				pair, err := stringList(p)
				if err != nil || len(pair) != 2 {
					return nil, fmt.Errorf("want [cert, key]: %w", errdefs.ErrInvalidArgument)
				}
				out = append(out, [2]string{pair[0], pair[1]})
			default:
				return nil, fmt.Errorf("want string or [cert, key], got %T: %w", e, errdefs.ErrInvalidArgument)
			}
		}
		return out, nil
	default:
		return nil, fmt.Errorf("want string or list, got %T: %w", v, errdefs.ErrInvalidArgument)
	}
}
